"""Audio clips from requests (common.AudioClip): decoded, checked and bounded, for every service.

    clips = ClipReader(max_seconds=30, setting="SYN_AUDIO_MAX_SECONDS")
    clip = await clips.read(request.audio, "audio")    # Clip(samples mono float32, sample_rate, field)

Every refusal is a status naming the proto field: no source, an empty or undecodable
file, a bad sample rate, non-finite samples (INVALID_ARGUMENT), a clip longer than the
limit (RESOURCE_EXHAUSTED naming the setting). Decoding runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from synesthesia.tensors import pcm_to_array
from synesthesia.v1 import common_pb2

from .errors import invalid_argument, resource_exhausted


@dataclass
class Clip:
    samples: np.ndarray  # mono float32
    sample_rate: int
    field: str  # the proto field the samples came from, for later errors


def _decoding():
    # Lazily: it loads torch, which the gateway (importing this runtime) never needs.
    from models.audio import decoding

    return decoding


class ClipReader:
    def __init__(self, max_seconds: float, setting: str) -> None:
        self.max_seconds = max_seconds
        self.setting = setting

    def check_rate(self, rate: int, field: str) -> None:
        if rate <= 0:
            raise invalid_argument(field, f"sample rate must be positive, got {rate}")
        if rate > _decoding().MAX_SAMPLE_RATE_HZ:
            raise invalid_argument(field, f"sample rate {rate} Hz is above the largest supported "
                                          f"{_decoding().MAX_SAMPLE_RATE_HZ} Hz")

    def check_duration(self, samples: int, rate: int, field: str) -> None:
        seconds = samples / rate
        if seconds > self.max_seconds:
            raise resource_exhausted(field, f"clip is {seconds:.2f} s long; the limit is {self.max_seconds:g} s "
                                            f"({self.setting})")

    def pcm_samples(self, data: bytes, field: str) -> np.ndarray:
        try:
            samples = pcm_to_array(data)
        except ValueError as exc:
            raise invalid_argument(field, str(exc)) from None
        return samples

    @staticmethod
    def check_finite(samples: np.ndarray, field: str) -> None:
        finite = np.isfinite(samples)
        if not finite.all():
            index = int(np.argmin(finite))
            raise invalid_argument(field, f"sample {index} is {samples[index]}; samples must be finite")

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
        try:
            frames, rate, _channels = _decoding().probe(data)
            self.check_rate(rate, encoded_field)
            self.check_duration(frames, rate, encoded_field)
            samples, rate = await asyncio.to_thread(_decoding().decode, data)
        except _decoding().AudioDecodeError as exc:
            raise invalid_argument(encoded_field, str(exc)) from None
        if samples.size == 0:
            raise invalid_argument(encoded_field, "the file holds no samples")
        self.check_finite(samples, encoded_field)
        return Clip(samples, rate, encoded_field)

