"""ExtractFeatures and StreamFeatures through a real server: defaults, every kind and
window against the numpy reference, encoded files, and streaming == unary."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.audio import decoding
from models.audio.features import FeatureConfig, compute, frequencies_hz
from synesthesia.tensors import array_to_pcm, from_tensor
from synesthesia.v1 import audio_pb2, common_pb2
from tests.audio.test_features import assert_relative, clip, reference_stft


def pcm_clip(samples: np.ndarray, rate: int = 16000) -> common_pb2.AudioClip:
    return common_pb2.AudioClip(pcm=common_pb2.Pcm(samples_f32le=array_to_pcm(samples), sample_rate_hz=rate))


def test_defaults_are_the_documented_log_mel(audio_stub):
    x = clip(1.0)
    response = audio_stub.ExtractFeatures(audio_pb2.ExtractFeaturesRequest(audio=pcm_clip(x)), timeout=30)
    features = from_tensor(response.features)
    config = FeatureConfig(kind="log_mel", n_fft=512, hop_length=128, window="hamming", n_mels=64, center=False)
    assert features.shape == (64, config.frames(x.size))
    assert_relative(features, compute(torch.from_numpy(x), 16000, config).numpy())
    assert response.frame_rate_hz == pytest.approx(16000 / 128)
    np.testing.assert_allclose(response.frequencies_hz, frequencies_hz(config, 16000), rtol=1e-6)
    assert response.sample_rate_hz == 16000 and response.sample_count == x.size


@pytest.mark.parametrize("kind,window,n_fft,hop,center", [
    (audio_pb2.FEATURE_KIND_MAGNITUDE, audio_pb2.WINDOW_KIND_HAMMING, 512, 0, False),
    (audio_pb2.FEATURE_KIND_MAGNITUDE, audio_pb2.WINDOW_KIND_HANN, 1024, 200, True),
    (audio_pb2.FEATURE_KIND_POWER, audio_pb2.WINDOW_KIND_RECTANGULAR, 256, 256, False),
    (audio_pb2.FEATURE_KIND_POWER, audio_pb2.WINDOW_KIND_UNSPECIFIED, 128, 1, True),
])
def test_linear_features_match_numpy_reference(audio_stub, kind, window, n_fft, hop, center):
    x = clip(0.5, seed=4)
    options = audio_pb2.FeatureOptions(kind=kind, window=window, n_fft=n_fft, hop_length_samples=hop, center=center)
    response = audio_stub.ExtractFeatures(audio_pb2.ExtractFeaturesRequest(audio=pcm_clip(x), options=options),
                                          timeout=30)
    name = {audio_pb2.WINDOW_KIND_HANN: "hann", audio_pb2.WINDOW_KIND_RECTANGULAR: "rectangular"}.get(window,
                                                                                                      "hamming")
    ref = np.abs(reference_stft(x, n_fft, hop or n_fft // 4, name, center))
    expected = ref if kind == audio_pb2.FEATURE_KIND_MAGNITUDE else ref**2
    assert_relative(from_tensor(response.features), expected)
    assert len(response.frequencies_hz) == n_fft // 2 + 1
    assert response.frequencies_hz[1] == pytest.approx(16000 / n_fft)
    assert response.frame_rate_hz == pytest.approx(16000 / (hop or n_fft // 4))


def test_encoded_stereo_file_is_downmixed_and_resampled(audio_stub):
    left, right = clip(1.0, rate=44100, seed=5), clip(1.0, rate=44100, seed=6)
    data = decoding.encode(np.stack([left, right], axis=1), 44100, format="FLAC", subtype="PCM_24")
    options = audio_pb2.FeatureOptions(kind=audio_pb2.FEATURE_KIND_LOG_MEL, n_mels=40, target_sample_rate_hz=16000)
    response = audio_stub.ExtractFeatures(
        audio_pb2.ExtractFeaturesRequest(audio=common_pb2.AudioClip(encoded=data), options=options), timeout=30)
    samples, rate = decoding.decode(data)
    resampled = decoding.resample(torch.from_numpy(samples), rate, 16000)
    expected = compute(resampled, 16000, FeatureConfig(n_mels=40)).numpy()
    assert response.sample_rate_hz == 16000 and response.sample_count == 16000
    np.testing.assert_allclose(from_tensor(response.features), expected, rtol=1e-4, atol=1e-4)


def _stream(samples: np.ndarray, boundaries: list[int], options: audio_pb2.FeatureOptions, rate: int = 16000):
    edges = [0, *boundaries, samples.size]
    for i, (a, b) in enumerate(zip(edges, edges[1:])):
        yield audio_pb2.StreamFeaturesRequest(
            options=options if i == 0 else None,
            chunk=common_pb2.Pcm(samples_f32le=array_to_pcm(samples[a:b]), sample_rate_hz=rate))


@pytest.mark.parametrize("boundaries", [[], [1], [4000, 4001, 9000], list(range(137, 24000, 1500))])
@pytest.mark.parametrize("options", [
    audio_pb2.FeatureOptions(),
    audio_pb2.FeatureOptions(kind=audio_pb2.FEATURE_KIND_MAGNITUDE, n_fft=1024, hop_length_samples=333, center=True),
    audio_pb2.FeatureOptions(kind=audio_pb2.FEATURE_KIND_POWER, target_sample_rate_hz=8000),
])
def test_streaming_equals_unary(audio_stub, boundaries, options):
    x = clip(1.5, seed=7)
    unary = audio_stub.ExtractFeatures(audio_pb2.ExtractFeaturesRequest(audio=pcm_clip(x), options=options),
                                       timeout=30)
    streamed = audio_stub.StreamFeatures(_stream(x, boundaries, options), timeout=30)
    assert streamed.chunk_count == len(boundaries) + 1
    result = streamed.result
    assert list(result.features.shape) == list(unary.features.shape)
    np.testing.assert_allclose(from_tensor(result.features), from_tensor(unary.features), rtol=1e-6, atol=1e-6)
    assert result.frame_rate_hz == unary.frame_rate_hz and result.sample_count == unary.sample_count
    assert list(result.frequencies_hz) == list(unary.frequencies_hz)


def test_stream_options_come_from_the_first_message_only(audio_stub):
    x = clip(0.5, seed=8)

    def messages():
        yield audio_pb2.StreamFeaturesRequest(options=audio_pb2.FeatureOptions(n_mels=20))
        yield audio_pb2.StreamFeaturesRequest(options=audio_pb2.FeatureOptions(n_mels=90),
                                              chunk=common_pb2.Pcm(samples_f32le=array_to_pcm(x), sample_rate_hz=16000))

    response = audio_stub.StreamFeatures(messages(), timeout=30)
    assert response.chunk_count == 1 and response.result.features.shape[0] == 20
