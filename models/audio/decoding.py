"""Audio files to mono float32 samples (soundfile) and resampling (torchaudio).

torchaudio's own I/O needs torchcodec, which this stack does not ship;
libsndfile (through soundfile) reads WAV, FLAC and OGG/Vorbis.
"""

from __future__ import annotations

import io
import math

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

# torchaudio builds a [new/g, orig/g + 2*width] kernel (g = gcd of the rates);
# co-prime odd rates would make it gigantic, so such pairs are refused.
MAX_RESAMPLE_KERNEL = 1 << 22
MAX_SAMPLE_RATE_HZ = 768_000


class AudioDecodeError(ValueError):
    """The bytes are not an audio file libsndfile can read."""


def probe(data: bytes) -> tuple[int, int, int]:
    """(frames, sample rate, channels) from the header, without decoding the samples."""
    try:
        info = soundfile.info(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioDecodeError(f"not a readable WAV/FLAC/OGG file ({exc})") from None
    return int(info.frames), int(info.samplerate), int(info.channels)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode an encoded file to (mono float32 samples, sample rate); channels are averaged."""
    if not data:
        raise AudioDecodeError("no bytes")
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioDecodeError(f"not a readable WAV/FLAC/OGG file ({exc})") from None
    return samples.mean(axis=1, dtype=np.float32), int(rate)


def encode(samples: np.ndarray, sample_rate: int, format: str = "WAV", subtype: str | None = None) -> bytes:
    """Encode mono or [time, channels] samples (for clients, tests and demos)."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(samples, dtype=np.float32), sample_rate, format=format, subtype=subtype)
    return buffer.getvalue()


def resample_cost(orig_hz: int, new_hz: int) -> int:
    """Elements of torchaudio's resampling kernel for this pair of rates."""
    g = math.gcd(orig_hz, new_hz)
    orig, new = orig_hz // g, new_hz // g
    width = math.ceil(6 * orig / (min(orig, new) * 0.99))
    return new * (orig + 2 * width)


def can_resample(orig_hz: int, new_hz: int) -> bool:
    return orig_hz == new_hz or resample_cost(orig_hz, new_hz) <= MAX_RESAMPLE_KERNEL


def resample(samples: torch.Tensor, orig_hz: int, new_hz: int) -> torch.Tensor:
    """Band-limited (sinc, Hann window) resampling along the last axis."""
    if orig_hz == new_hz:
        return samples
    if not can_resample(orig_hz, new_hz):
        raise ValueError(f"cannot resample {orig_hz} Hz to {new_hz} Hz: the rates share too small a divisor")
    return AF.resample(samples, orig_hz, new_hz)
