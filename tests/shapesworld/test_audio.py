"""Sound: the fundamental is the colour's frequency, the waveform matches the shape, fades, levels, SNR."""

import numpy as np
import pytest
from scipy import ndimage

from models.shapesworld import FREQUENCIES_HZ, SAMPLE_RATE_HZ, SHAPES, object_signature, render_scene


def _spectrum(x):
    window = np.hanning(len(x))
    return np.abs(np.fft.rfft(x * window)), np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE_HZ)


def _harmonic(mag, freqs, f):
    band = (freqs > f - 4) & (freqs < f + 4)
    return mag[band].max()


@pytest.mark.parametrize("colour", list(FREQUENCIES_HZ))
@pytest.mark.parametrize("shape", SHAPES)
def test_fundamental_and_waveform(shape, colour):
    x = object_signature(shape, colour, "large")
    assert x.dtype == np.float32 and x.shape == (16000,)
    mag, freqs = _spectrum(x)
    f0 = FREQUENCIES_HZ[colour]
    assert abs(freqs[np.argmax(mag)] - f0) <= 1.0
    h1, h2, h3 = (_harmonic(mag, freqs, k * f0) for k in (1, 2, 3))
    r2, r3 = h2 / h1, h3 / h1
    expected = {  # harmonic amplitudes relative to the fundamental
        "circle": (0.0, 0.0),      # sine: none
        "square": (0.0, 1 / 3),    # odd harmonics 1/n
        "triangle": (0.0, 1 / 9),  # odd harmonics 1/n^2
        "cross": (1 / 2, 1 / 3),   # sawtooth: every harmonic 1/n
    }[shape]
    assert abs(r2 - expected[0]) < 0.04 and abs(r3 - expected[1]) < 0.04, (shape, colour, r2, r3)


def test_level_and_fades():
    for size, amplitude in (("small", 0.3), ("large", 0.6)):
        for shape in SHAPES:
            x = object_signature(shape, "red", size)
            assert abs(np.abs(x).max() - amplitude) < 0.01
            assert abs(x[0]) < 1e-6 and abs(x[-1]) < 0.01
            assert np.abs(x[:80]).max() < amplitude * 0.55  # half way through the 10 ms fade in
            assert np.abs(x[160:800]).max() > amplitude * 0.97


def test_signature_is_a_copy():
    x = object_signature("circle", "red", "small")
    x[:] = 0
    assert np.abs(object_signature("circle", "red", "small")).max() > 0.29


def test_scene_audio_is_the_sounding_object_plus_noise():
    for seed in range(1_000_000, 1_000_060):
        scene = render_scene(seed)
        obj = scene.objects[scene.sounding_index]
        clean = object_signature(obj.shape, obj.colour, obj.size)
        noise = scene.audio.astype(np.float64) - clean
        snr = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise ** 2))
        assert 9.5 < snr < 30.5 and abs(snr - scene.snr_db) < 0.5
        mag, freqs = _spectrum(scene.audio)
        assert abs(freqs[np.argmax(mag)] - FREQUENCIES_HZ[obj.colour]) <= 1.0
        if len(scene.objects) == 2:
            other = scene.objects[1 - scene.sounding_index]
            wrong = object_signature(other.shape, other.colour, other.size)
            assert np.dot(scene.audio, clean) / np.linalg.norm(clean) > np.dot(scene.audio, wrong) / np.linalg.norm(wrong)


def test_mask_covers_the_sounding_object():
    sounding_counts = [0, 0]
    for seed in range(1_000_000, 1_000_100):
        scene = render_scene(seed, domain="day")
        obj = scene.objects[scene.sounding_index]
        assert np.array_equal(scene.mask, obj.mask)
        if len(scene.objects) == 2:
            sounding_counts[scene.sounding_index] += 1
            assert not (scene.mask & scene.objects[1 - scene.sounding_index].mask).any()
        # The mask is the object: its pixels carry the object's colour, the pixels around it do not.
        inside = scene.image[scene.mask].astype(float).mean(axis=0)
        ring = ndimage.binary_dilation(scene.mask, iterations=2) & ~ndimage.binary_dilation(scene.mask)
        around = scene.image[ring].astype(float).mean(axis=0)
        assert np.abs(inside - np.asarray(obj.rgb)).max() < 25  # edge pixels blend with the background
        assert np.abs(around - np.asarray(obj.rgb)).max() > 60
        x0, y0, x1, y1 = obj.bbox
        assert scene.mask[y0:y1, x0:x1].any(axis=0).all() and scene.mask[y0:y1, x0:x1].any(axis=1).all()
    assert min(sounding_counts) > 10  # either object can sound
