"""SYN_AUDIO_*: the audio service's own settings, typed and checked once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.runtime import read_settings


@dataclass(frozen=True)
class AudioSettings:
    # Longest clip accepted, seconds (longer: INVALID_ARGUMENT naming this setting).
    max_seconds: float = field(default=30.0, metadata={"min": 0.001})
    # Largest STFT (frequency bins x frames) one request may ask for: bounds memory per call.
    max_stft_cells: int = field(default=1 << 23, metadata={"min": 1})
    # Encoded files, checked from the header before decoding (RESOURCE_EXHAUSTED naming the setting):
    # highest sample rate, most channels, and most samples (frames x channels) one decode may produce,
    # 2^22 = 16 MiB of float32 (a 170 kB FLAC can declare 157 million).
    max_sample_rate_hz: int = field(default=192_000, metadata={"min": 1})
    max_channels: int = field(default=8, metadata={"min": 1})
    max_decoded_samples: int = field(default=1 << 22, metadata={"min": 1})
    # Model-repository entries served (comma-separated); unset = every sound-localization entry.
    models: tuple[str, ...] = ()
    # Feature calls do not wait for company by default: an STFT costs the same batched or not.
    features_batch_wait_ms: float = field(default=0.0, metadata={"min": 0.0})

    @classmethod
    def from_env(cls) -> "AudioSettings":
        return read_settings(cls, "SYN_AUDIO_")
