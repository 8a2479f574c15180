"""Sound (SHAPESWORLD.md, "Sound"): 1.0 s at 16 kHz mono per object.

The waveform is set by the shape (circle sine, square square, triangle triangle,
cross sawtooth), the fundamental by the colour, the peak amplitude by the size
(0.3 small, 0.6 large), with a linear 10 ms fade in and out. Waveforms are the
plain (not band-limited) periodic functions of the phase p = f t, all starting at
phase 0: sine sin(2 pi p); square +1 for frac(p) < 1/2 else -1; triangle
1 - 4 |frac(p + 1/4) - 1/2| (0 at p = 0, rising); sawtooth 2 frac(p + 1/2) - 1
(0 at p = 0, rising). A scene's clip is one object's signature plus white Gaussian
noise at an SNR of 10..30 dB (signal power = mean square of the signature).
"""

from __future__ import annotations

import numpy as np

from models.shapesworld.spec import (
    AMPLITUDES, CLIP_SAMPLES, FADE_SECONDS, FREQUENCIES_HZ, SAMPLE_RATE_HZ, WAVEFORMS,
)

_T = np.arange(CLIP_SAMPLES, dtype=np.float64) / SAMPLE_RATE_HZ
_FADE_N = int(round(FADE_SECONDS * SAMPLE_RATE_HZ))
_ENVELOPE = np.ones(CLIP_SAMPLES, dtype=np.float64)
_ENVELOPE[:_FADE_N] = np.arange(_FADE_N) / _FADE_N
_ENVELOPE[-_FADE_N:] = np.arange(_FADE_N)[::-1] / _FADE_N
_CACHE: dict[tuple[str, str, str], np.ndarray] = {}


def waveform(kind: str, phase: np.ndarray) -> np.ndarray:
    """A unit-amplitude periodic waveform (`sine`, `square`, `triangle`, `sawtooth`) at phase `phase` (cycles)."""
    frac = np.mod(phase, 1.0)
    if kind == "sine":
        return np.sin(2 * np.pi * phase)
    if kind == "square":
        return np.where(frac < 0.5, 1.0, -1.0)
    if kind == "triangle":
        return 1.0 - 4.0 * np.abs(np.mod(phase + 0.25, 1.0) - 0.5)
    if kind == "sawtooth":
        return 2.0 * np.mod(phase + 0.5, 1.0) - 1.0
    raise ValueError(f"unknown waveform {kind!r}")


def object_signature(shape: str, colour: str, size: str) -> np.ndarray:
    """The clean 1 s signature of an object: float32 (16000,). Returns a fresh copy."""
    key = (shape, colour, size)
    if key not in _CACHE:
        if shape not in WAVEFORMS or colour not in FREQUENCIES_HZ or size not in AMPLITUDES:
            raise ValueError(f"unknown object {key}")
        wave = waveform(WAVEFORMS[shape], FREQUENCIES_HZ[colour] * _T)
        _CACHE[key] = (AMPLITUDES[size] * _ENVELOPE * wave).astype(np.float32)
    return _CACHE[key].copy()


def noisy_clip(signature: np.ndarray, snr_db: float, noise: np.ndarray) -> np.ndarray:
    """`signature` plus unit-variance `noise` scaled to an SNR of `snr_db` dB; float32."""
    signal_power = float(np.mean(np.square(signature, dtype=np.float64)))
    noise_std = np.sqrt(signal_power / (10.0 ** (snr_db / 10.0)))
    return (signature.astype(np.float64) + noise_std * noise).astype(np.float32)
