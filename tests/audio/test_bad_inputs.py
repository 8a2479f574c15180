"""Every kind of bad input gets its own status naming the field, and the server keeps serving."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from models.audio import decoding
from synesthesia.tensors import array_to_pcm
from synesthesia.v1 import audio_pb2, common_pb2
from tests import hostile_inputs
from tests.runtime.helpers import field_violations, png_bytes, png_declaring

INVALID, NOT_FOUND, EXHAUSTED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                 grpc.StatusCode.RESOURCE_EXHAUSTED)
TONE = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
IMAGE = png_bytes(np.full((64, 64, 3), 200, np.uint8))


def pcm(samples=TONE, rate=16000, raw: bytes | None = None) -> common_pb2.AudioClip:
    data = raw if raw is not None else array_to_pcm(np.asarray(samples, np.float32))
    return common_pb2.AudioClip(pcm=common_pb2.Pcm(samples_f32le=data, sample_rate_hz=rate))


def with_value(index: int, value: float) -> np.ndarray:
    x = TONE.copy()
    x[index] = value
    return x


def features(audio=None, **options):
    return ("ExtractFeatures", audio_pb2.ExtractFeaturesRequest(
        audio=audio if audio is not None else pcm(), options=audio_pb2.FeatureOptions(**options)))


def localize(audio=None, image=IMAGE, model=""):
    return ("Localize", audio_pb2.LocalizeRequest(
        audio=audio if audio is not None else pcm(), image=common_pb2.Image(data=image), model=model))


def stream(*chunks, options=None):
    messages = [audio_pb2.StreamFeaturesRequest(chunk=c) for c in chunks]
    if options is not None:
        messages.insert(0, audio_pb2.StreamFeaturesRequest(options=options))
    return ("StreamFeatures", messages)


def chunk(samples=TONE[:4000], rate=16000):
    return common_pb2.Pcm(samples_f32le=array_to_pcm(np.asarray(samples, np.float32)), sample_rate_hz=rate)


WAV = decoding.encode(TONE, 16000)
CASES = {
    "nan sample": (features(pcm(with_value(123, np.nan))), INVALID, "audio.pcm.samples_f32le"),
    "inf sample": (features(pcm(with_value(5, np.inf))), INVALID, "audio.pcm.samples_f32le"),
    "1e38 sample (finite, overflows the power spectrum)": (features(pcm(with_value(7, 1e38))), INVALID,
                                                           "audio.pcm.samples_f32le"),
    "1e38 in a float wav": (features(common_pb2.AudioClip(encoded=decoding.encode(with_value(3, -1e38), 16000,
                                                                                  subtype="FLOAT"))),
                            INVALID, "audio.encoded"),
    "localize 1e38 audio": (localize(pcm(with_value(0, 3e37))), INVALID, "audio.pcm.samples_f32le"),
    "stream 1e38": (stream(chunk(), chunk(with_value(1, 1e38)[:100])), INVALID, "chunk.samples_f32le"),
    "empty pcm": (features(pcm(raw=b"")), INVALID, "audio.pcm.samples_f32le"),
    "ragged pcm bytes": (features(pcm(raw=b"\x00" * 4099)), INVALID, "audio.pcm.samples_f32le"),
    "zero sample rate": (features(pcm(rate=0)), INVALID, "audio.pcm.sample_rate_hz"),
    "negative sample rate": (features(pcm(rate=-16000)), INVALID, "audio.pcm.sample_rate_hz"),
    "absurd sample rate": (features(pcm(rate=2_000_000_000)), INVALID, "audio.pcm.sample_rate_hz"),
    "too long": (features(pcm(np.zeros(31 * 16000, np.float32))), EXHAUSTED, "audio.pcm.samples_f32le"),
    "n_fft not a power of two": (features(n_fft=500), INVALID, "options.n_fft"),
    "negative n_fft": (features(n_fft=-512), INVALID, "options.n_fft"),
    "n_fft longer than clip": (features(pcm(TONE[:300])), INVALID, "options.n_fft"),
    "n_fft longer than resampled clip": (features(n_fft=8192, target_sample_rate_hz=4000), INVALID,
                                         "options.n_fft"),
    "hop above n_fft": (features(n_fft=256, hop_length_samples=257), INVALID, "options.hop_length_samples"),
    "negative hop": (features(hop_length_samples=-1), INVALID, "options.hop_length_samples"),
    "too many mels": (features(n_mels=1000), INVALID, "options.n_mels"),
    "unknown kind": (features(kind=42), INVALID, "options.kind"),
    "unknown window": (features(window=9), INVALID, "options.window"),
    "negative target rate": (features(target_sample_rate_hz=-1), INVALID, "options.target_sample_rate_hz"),
    "co-prime target rate": (features(pcm(TONE, 16001), target_sample_rate_hz=15991), INVALID,
                             "options.target_sample_rate_hz"),
    "stft too large": (features(pcm(np.zeros(29 * 48000, np.float32), 48000), n_fft=4096, hop_length_samples=1,
                                kind=audio_pb2.FEATURE_KIND_LOG_MEL), EXHAUSTED, "options.hop_length_samples"),
    "no source": (features(common_pb2.AudioClip()), INVALID, "audio"),
    "corrupt encoded bytes": (features(common_pb2.AudioClip(encoded=b"RIFF....WAVEfmt garbage")), INVALID,
                              "audio.encoded"),
    "truncated wav": (features(common_pb2.AudioClip(encoded=WAV[:30])), INVALID, "audio.encoded"),
    "empty encoded bytes": (features(common_pb2.AudioClip(encoded=b"")), INVALID, "audio.encoded"),
    "nan in float wav": (features(common_pb2.AudioClip(encoded=decoding.encode(with_value(9, np.nan), 16000,
                                                                               subtype="FLOAT"))),
                         INVALID, "audio.encoded"),
    "stream mismatched rates": (stream(chunk(), chunk(rate=8000)), INVALID, "chunk.sample_rate_hz"),
    "stream zero rate": (stream(chunk(rate=0)), INVALID, "chunk.sample_rate_hz"),
    "stream nan": (stream(chunk(), chunk(with_value(0, np.nan)[:100])), INVALID, "chunk.samples_f32le"),
    "stream no samples": (stream(options=audio_pb2.FeatureOptions()), INVALID, "chunk.samples_f32le"),
    "stream too long": (stream(*[chunk(np.zeros(160000, np.float32))] * 4), EXHAUSTED, "chunk.samples_f32le"),
    "stream bad options": (stream(chunk(), options=audio_pb2.FeatureOptions(n_fft=3)), INVALID, "options.n_fft"),
    "localize unknown model": (localize(model="no-such-model"), NOT_FOUND, "model"),
    "localize corrupt image": (localize(image=b"not an image"), INVALID, "image.data"),
    "localize empty image": (localize(image=b""), INVALID, "image.data"),
    "localize huge image": (localize(image=png_declaring(100_000, 100_000)), EXHAUSTED, "image.data"),
    "localize no audio": (localize(common_pb2.AudioClip()), INVALID, "audio"),
    "localize nan audio": (localize(pcm(with_value(0, np.inf))), INVALID, "audio.pcm.samples_f32le"),
    "localize clip too short": (localize(pcm(TONE[:500])), INVALID, "audio.pcm.samples_f32le"),
    "localize zero rate": (localize(pcm(rate=0)), INVALID, "audio.pcm.sample_rate_hz"),
    "localize corrupt audio": (localize(common_pb2.AudioClip(encoded=b"\x00" * 64)), INVALID, "audio.encoded"),
}


def call(stub, method: str, request):
    if method == "StreamFeatures":
        return stub.StreamFeatures(iter(request), timeout=30)
    return getattr(stub, method)(request, timeout=30)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_names_its_field_and_the_server_keeps_serving(audio_stub, name):
    (method, request), code, field = CASES[name]
    with pytest.raises(grpc.RpcError) as caught:
        call(audio_stub, method, request)
    assert caught.value.code() == code, caught.value.details()
    assert field in [f for f, _ in field_violations(caught.value)], caught.value.details()
    # The next good call of the same RPC succeeds.
    if method == "Localize":
        assert audio_stub.Localize(localize()[1], timeout=30).heatmap.image_width_px == 64
    else:
        assert audio_stub.ExtractFeatures(features()[1], timeout=30).features.shape[0] == 64


@pytest.mark.parametrize("name", list(hostile_inputs.AUDIO_PAST_THE_LIMITS))
def test_audio_files_past_the_limits_are_refused_from_the_header_by_name(audio_stub, name):
    make, setting = hostile_inputs.AUDIO_PAST_THE_LIMITS[name]
    for method, request in (features(common_pb2.AudioClip(encoded=make())),
                            localize(common_pb2.AudioClip(encoded=make()))):
        with pytest.raises(grpc.RpcError) as caught:
            call(audio_stub, method, request)
        assert caught.value.code() == EXHAUSTED, caught.value.details()
        assert setting in caught.value.details()
        assert "audio.encoded" in [f for f, _ in field_violations(caught.value)]
    assert audio_stub.ExtractFeatures(features()[1], timeout=30).features.shape[0] == 64


def test_status_text_never_carries_reprs_or_addresses(audio_stub):
    for junk in (b"RIFF....WAVEfmt garbage", b"\x00" * 64, b"fLaC" + b"\xff" * 100):
        with pytest.raises(grpc.RpcError) as caught:
            audio_stub.ExtractFeatures(features(common_pb2.AudioClip(encoded=junk))[1], timeout=30)
        assert "0x" not in caught.value.details() and "object at" not in caught.value.details()
        assert "BytesIO" not in caught.value.details()
