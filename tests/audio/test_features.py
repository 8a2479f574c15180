"""STFT features against independent references: numpy framing + rfft with scipy's
windows, librosa's STFT and mel filterbank; decoding and resampling."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from models.audio import decoding
from models.audio.features import FeatureConfig, compute, frequencies_hz

SCIPY_WINDOWS = {"hamming": "hamming", "hann": "hann", "rectangular": "boxcar"}


def reference_stft(x: np.ndarray, n_fft: int, hop: int, window: str, center: bool) -> np.ndarray:
    """float64 numpy STFT: frame, window (periodic, scipy), rfft."""
    x = x.astype(np.float64)
    if center:
        x = np.pad(x, n_fft // 2, mode="reflect")
    w = scipy.signal.get_window(SCIPY_WINDOWS[window], n_fft, fftbins=True)
    count = 1 + (len(x) - n_fft) // hop
    frames = np.stack([x[i * hop:i * hop + n_fft] * w for i in range(count)], axis=1)
    return np.fft.rfft(frames, axis=0)


def clip(seconds: float = 0.5, rate: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sign(np.sin(2 * np.pi * 97 * t))
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def assert_relative(ours: np.ndarray, ref: np.ndarray, tolerance: float = 1e-4) -> None:
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=tolerance, atol=tolerance * np.abs(ref).max())


@pytest.mark.parametrize("window", ["hamming", "hann", "rectangular"])
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("n_fft,hop", [(512, 0), (256, 100), (1024, 1024), (64, 1)])
def test_magnitude_and_power_match_numpy_reference(window, center, n_fft, hop):
    x = clip()
    config = FeatureConfig(kind="magnitude", n_fft=n_fft, hop_length=hop, window=window, center=center)
    ref = reference_stft(x, n_fft, config.hop, window, center)
    magnitude = compute(torch.from_numpy(x), 16000, config).numpy()
    assert_relative(magnitude, np.abs(ref))
    power = compute(torch.from_numpy(x), 16000, FeatureConfig(**{**config.to_dict(), "kind": "power"})).numpy()
    assert_relative(power, np.abs(ref) ** 2)


def test_matches_librosa_stft():
    librosa = pytest.importorskip("librosa")
    x = clip(1.0)
    ref = np.abs(librosa.stft(x.astype(np.float64), n_fft=512, hop_length=128, window="hamming", center=True,
                              pad_mode="reflect"))
    ours = compute(torch.from_numpy(x), 16000, FeatureConfig(kind="magnitude", center=True)).numpy()
    assert_relative(ours, ref)


@pytest.mark.parametrize("n_mels,n_fft,rate", [(64, 512, 16000), (128, 2048, 44100), (40, 256, 8000)])
def test_log_mel_matches_librosa(n_mels, n_fft, rate):
    librosa = pytest.importorskip("librosa")
    x = clip(1.0, rate=rate, seed=1)
    config = FeatureConfig(kind="log_mel", n_fft=n_fft, n_mels=n_mels)
    ours = compute(torch.from_numpy(x), rate, config).numpy()
    power = np.abs(reference_stft(x, n_fft, config.hop, "hamming", False)) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=rate, n_mels=n_mels, htk=True, norm=None, fmin=0.0,
                                         fmax=rate / 2)
    ref = np.log(mel + 1e-6)
    assert ours.shape == ref.shape == (n_mels, config.frames(x.size))
    # log domain: an absolute tolerance is a relative one on the mel energies.
    np.testing.assert_allclose(ours, ref, atol=2e-3)
    # ... and most bands agree far more tightly than that.
    assert np.median(np.abs(ours - ref)) < 1e-5
    np.testing.assert_allclose(frequencies_hz(config, rate),
                               librosa.mel_frequencies(n_mels + 2, fmin=0.0, fmax=rate / 2, htk=True)[1:-1],
                               rtol=1e-5)


def test_linear_frequencies_and_frame_count():
    config = FeatureConfig(kind="power", n_fft=1024, hop_length=160)
    freqs = frequencies_hz(config, 16000)
    assert len(freqs) == 513 and freqs[0] == 0.0 and freqs[-1] == 8000.0
    assert config.frames(16000) == 1 + (16000 - 1024) // 160
    assert FeatureConfig(n_fft=1024, hop_length=160, center=True).frames(16000) == 1 + 16000 // 160


def test_batched_rows_equal_single_clips():
    clips = np.stack([clip(seed=s) for s in range(3)])
    config = FeatureConfig()
    batched = compute(torch.from_numpy(clips), 16000, config).numpy()
    for row, x in zip(batched, clips):
        np.testing.assert_allclose(row, compute(torch.from_numpy(x), 16000, config).numpy(), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("bad,match", [
    (dict(n_fft=500), "power of two"), (dict(hop_length=600), "hop"), (dict(n_mels=300), "n_mels"),
    (dict(window="kaiser"), "window"), (dict(kind="cqt"), "kind"),
])
def test_bad_configs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        compute(torch.zeros(4096), 16000, FeatureConfig(**bad))


def test_n_fft_longer_than_clip_is_refused():
    with pytest.raises(ValueError, match="longer than the clip"):
        compute(torch.zeros(300), 16000, FeatureConfig(n_fft=512))


@pytest.mark.parametrize("fmt,subtype,tolerance", [("WAV", "FLOAT", 0.0), ("WAV", "PCM_16", 1e-4),
                                                   ("FLAC", "PCM_24", 1e-6), ("OGG", "VORBIS", None)])
def test_decode_round_trip_and_downmix(fmt, subtype, tolerance):
    left, right = clip(0.5, seed=2) * 0.5, clip(0.5, seed=3) * 0.5
    data = decoding.encode(np.stack([left, right], axis=1), 22050, format=fmt, subtype=subtype)
    samples, rate = decoding.decode(data)
    assert rate == 22050 and samples.dtype == np.float32 and samples.shape == left.shape
    mono = (left + right) / 2
    if tolerance is None:  # lossy: the spectrum survives, not the samples
        assert np.corrcoef(samples, mono)[0, 1] > 0.95
    else:
        np.testing.assert_allclose(samples, mono, atol=tolerance)
    assert decoding.probe(data) == (left.size, 22050, 2)


@pytest.mark.parametrize("data", [b"", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"\x00" * 100, b"OggS" + b"\x01" * 60])
def test_corrupt_bytes_are_refused(data):
    with pytest.raises(decoding.AudioDecodeError):
        decoding.decode(data)


@pytest.mark.parametrize("orig,new", [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 44100)])
def test_resampling_keeps_a_tone(orig, new):
    t = np.arange(orig) / orig  # one second
    x = torch.from_numpy(np.sin(2 * np.pi * 1000.0 * t).astype(np.float32))
    y = decoding.resample(x, orig, new).numpy()
    assert y.size == new
    spectrum = np.abs(np.fft.rfft(y[new // 10: -new // 10] * np.hanning(y.size - 2 * (new // 10))))
    peak_hz = np.argmax(spectrum) * new / (y.size - 2 * (new // 10))
    assert abs(peak_hz - 1000.0) < 5.0
    # The band-limited result agrees with scipy's polyphase resampler away from the edges.
    ref = scipy.signal.resample_poly(x.numpy().astype(np.float64), new, orig)
    middle = slice(new // 10, -new // 10)
    np.testing.assert_allclose(y[middle], ref[middle], atol=2e-2)


def test_resampling_refuses_pathological_rate_pairs():
    assert not decoding.can_resample(383_993, 383_987)
    with pytest.raises(ValueError, match="cannot resample"):
        decoding.resample(torch.zeros(100), 383_993, 383_987)
