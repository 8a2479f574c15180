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


# Decoding reads this many frames at a time, so a file never costs more than its mono output
# plus one block of all its channels, whatever it claims in its header.
BLOCK_FRAMES = 1 << 16


class AudioDecodeError(ValueError):
    """The bytes are not an audio file libsndfile can read."""


class AudioTooLarge(ValueError):
    """Decoding would exceed the caller's sample budget (the header understated the length)."""


def _describe(exc: BaseException) -> str:
    # libsndfile's text names the Python file object (`<_io.BytesIO object at 0x...>`): keep its reason only.
    text = getattr(exc, "error_string", "") or str(exc)
    text = text.rsplit(">:", 1)[-1].split("<", 1)[0].strip(" :.")
    return text[:120] or "unreadable data"


def probe(data: bytes) -> tuple[int, int, int]:
    """(frames, sample rate, channels) from the header, without decoding the samples."""
    try:
        info = soundfile.info(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioDecodeError(f"not a readable WAV/FLAC/OGG file ({_describe(exc)})") from None
    return int(info.frames), int(info.samplerate), int(info.channels)


def decode(data: bytes, max_samples: int | None = None, should_stop=None) -> tuple[np.ndarray, int]:
    """Decode an encoded file to (mono float32 samples, sample rate); channels are averaged.

    Decodes in blocks of BLOCK_FRAMES: at most `max_samples` frames x channels
    are decoded (AudioTooLarge past that), and `should_stop()` is asked between
    blocks so that a caller who gave up stops the work.
    """
    if not data:
        raise AudioDecodeError("no bytes")
    blocks: list[np.ndarray] = []
    decoded = 0
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as audio:
            rate, channels = int(audio.samplerate), int(audio.channels)
            while True:
                if should_stop is not None:
                    should_stop()
                block = audio.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not len(block):
                    break
                decoded += block.size
                if max_samples is not None and decoded > max_samples:
                    raise AudioTooLarge(f"the file holds more than {max_samples} samples (frames x {channels} "
                                        "channels)")
                blocks.append(block.mean(axis=1, dtype=np.float32))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioDecodeError(f"not a readable WAV/FLAC/OGG file ({_describe(exc)})") from None
    except ValueError as exc:
        if isinstance(exc, AudioTooLarge):
            raise
        raise AudioDecodeError(f"not a readable WAV/FLAC/OGG file ({_describe(exc)})") from None
    samples = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return samples, rate


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
