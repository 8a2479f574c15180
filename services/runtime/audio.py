"""Audio clips from requests (common.AudioClip): decoded, checked and bounded, for every service.

    clips = ClipReader(AudioLimits(max_seconds=30, ...), setting_prefix="SYN_AUDIO_MAX_")
    clip = await clips.read(request.audio, "audio")    # Clip(samples mono float32, sample_rate, field)

Every refusal is a status naming the proto field: no source, an empty or undecodable file, a
bad sample rate, samples that are not finite or far outside full scale (INVALID_ARGUMENT); a
clip longer, faster, wider or larger than a limit (RESOURCE_EXHAUSTED naming the setting).
An encoded file is checked from its header before anything is decoded, then decoded in blocks
in a worker thread under the sample budget, stopping when the caller has gone. The audio and
embedding (audio-text models) services share this one reader, so both have the same bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from synesthesia.tensors import pcm_to_array
from synesthesia.v1 import common_pb2

from .calls import check_call, in_thread
from .errors import invalid_argument, resource_exhausted

# Full scale is +-1; ShapesWorld mixes reach about +-2. Far beyond, squares overflow float32 (1e38 -> inf)
# and features turn to NaN, so such samples are refused rather than computed.
MAX_ABS_SAMPLE = 1000.0


@dataclass
class Clip:
    samples: np.ndarray  # mono float32
    sample_rate: int
    field: str  # the proto field the samples came from, for later errors


@dataclass(frozen=True)
class AudioLimits:
    """What one clip may cost. Each is named in refusals as `setting_prefix` + its suffix below."""

    max_seconds: float  # ...SECONDS
    max_sample_rate_hz: int = 192_000  # ...SAMPLE_RATE_HZ
    max_channels: int = 8  # ...CHANNELS
    # ...DECODED_SAMPLES: frames x channels one decode may produce; 2^22 = 16 MiB of float32
    # (a 170 kB FLAC can declare 157 million).
    max_decoded_samples: int = 1 << 22


def _decoding():
    # Lazily: it loads torch, which the gateway (importing this runtime) never needs.
    from models.audio import decoding

    return decoding


class ClipReader:
    def __init__(self, limits: AudioLimits, setting_prefix: str) -> None:
        self.limits = limits
        self.prefix = setting_prefix

    def setting(self, suffix: str) -> str:
        return f"{self.prefix}{suffix}"

    def check_rate(self, rate: int, field: str) -> None:
        if rate <= 0:
            raise invalid_argument(field, f"sample rate must be positive, got {rate}")
        if rate > _decoding().MAX_SAMPLE_RATE_HZ:
            raise invalid_argument(field, f"sample rate {rate} Hz is above the largest supported "
                                          f"{_decoding().MAX_SAMPLE_RATE_HZ} Hz")

    def check_duration(self, samples: int, rate: int, field: str) -> None:
        seconds = samples / rate
        if seconds > self.limits.max_seconds:
            raise resource_exhausted(field, f"clip is {seconds:.2f} s long; the limit is "
                                            f"{self.limits.max_seconds:g} s ({self.setting('SECONDS')})")

    def check_header(self, frames: int, rate: int, channels: int, field: str) -> None:
        """Everything a decode would cost, refused from the header before decoding."""
        limits = self.limits
        self.check_rate(rate, field)
        if rate > limits.max_sample_rate_hz:
            raise resource_exhausted(field, f"the file's sample rate is {rate} Hz; the limit is "
                                            f"{limits.max_sample_rate_hz} Hz ({self.setting('SAMPLE_RATE_HZ')})")
        if channels > limits.max_channels:
            raise resource_exhausted(field, f"the file has {channels} channels; the limit is "
                                            f"{limits.max_channels} ({self.setting('CHANNELS')})")
        self.check_duration(frames, rate, field)
        if frames * channels > limits.max_decoded_samples:
            raise resource_exhausted(field, f"the file holds {frames} frames x {channels} channels = "
                                            f"{frames * channels} samples; the limit is "
                                            f"{limits.max_decoded_samples} ({self.setting('DECODED_SAMPLES')})")

    @staticmethod
    def pcm_samples(data: bytes, field: str) -> np.ndarray:
        try:
            return pcm_to_array(data)
        except ValueError as exc:
            raise invalid_argument(field, str(exc)) from None

    @staticmethod
    def check_finite(samples: np.ndarray, field: str) -> None:
        ok = np.isfinite(samples) & (np.abs(samples) <= MAX_ABS_SAMPLE)
        if not ok.all():
            index = int(np.argmin(ok))
            value = float(samples[index])
            why = "samples must be finite" if not np.isfinite(value) else \
                f"samples must lie within +-{MAX_ABS_SAMPLE:g} (full scale is +-1)"
            raise invalid_argument(field, f"sample {index} is {value:g}; {why}")

    async def read(self, audio: common_pb2.AudioClip, field: str) -> Clip:
        source = audio.WhichOneof("source")
        if source is None:
            raise invalid_argument(field, f"no source set: set {field}.encoded or {field}.pcm")
        if source == "pcm":
            pcm = audio.pcm
            self.check_rate(pcm.sample_rate_hz, f"{field}.pcm.sample_rate_hz")
            samples_field = f"{field}.pcm.samples_f32le"
            samples = self.pcm_samples(pcm.samples_f32le, samples_field)
            if samples.size == 0:
                raise invalid_argument(samples_field, "the clip has no samples")
            self.check_duration(samples.size, pcm.sample_rate_hz, samples_field)
            self.check_finite(samples, samples_field)
            return Clip(samples, pcm.sample_rate_hz, samples_field)
        encoded_field = f"{field}.encoded"
        data = audio.encoded
        if not data:
            raise invalid_argument(encoded_field, "the encoded file is empty")
        decoding = _decoding()
        budget = self.limits.max_decoded_samples
        try:
            frames, rate, channels = decoding.probe(data)
            self.check_header(frames, rate, channels, encoded_field)
            samples, rate = await in_thread("decoding audio", decoding.decode, data, budget,
                                            lambda: check_call("decoding audio"))
        except decoding.AudioTooLarge as exc:
            raise resource_exhausted(encoded_field, f"{exc}; the limit is {budget} "
                                                    f"({self.setting('DECODED_SAMPLES')})") from None
        except decoding.AudioDecodeError as exc:
            raise invalid_argument(encoded_field, str(exc)) from None
        if samples.size == 0:
            raise invalid_argument(encoded_field, "the file holds no samples")
        self.check_finite(samples, encoded_field)
        return Clip(samples, rate, encoded_field)
