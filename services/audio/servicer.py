"""The Audio service: STFT features of clips (unary and streamed) and sound-source localisation.

Requests are validated here, on the event loop, so that every bad input gets
its own status naming the proto field; the device work (resampling, STFT,
the localisation network) runs in two dynamic batchers.

Limits (environment): SYN_AUDIO_MAX_SECONDS (default 30) caps a clip's
duration and SYN_AUDIO_MAX_STFT_CELLS (default 2^23) the STFT's frames x
frequency bins; for encoded files SYN_AUDIO_MAX_SAMPLE_RATE_HZ (default
192000), SYN_AUDIO_MAX_CHANNELS (default 8) and SYN_AUDIO_MAX_DECODED_SAMPLES
(frames x channels, default 2^22, 16 MiB of float32) are checked from the
header before any decoding, and decoding runs in blocks that stop at that
budget (a header can understate the length) or when the caller has gone. All
answer RESOURCE_EXHAUSTED naming the setting, like the runtime's pixel and
message-size limits. PCM must be finite and within +-1000 (services/runtime/audio.py). The localisers are the model
repository's sound-localization entries (services/runtime/registry.py);
SYN_AUDIO_MODELS names the ones to serve (comma-separated).
SYN_AUDIO_FEATURES_BATCH_WAIT_MS (default 0) is the features batcher's wait;
Localize uses the runtime's SYN_MAX_BATCH_WAIT_MS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from synesthesia.tensors import to_tensor
from synesthesia.v1 import audio_pb2, audio_pb2_grpc, common_pb2

from models.audio import decoding
from models.audio.features import MAX_MELS, FeatureConfig, compute, frequencies_hz
from models.repository import SOUND_LOCALIZATION
from services.audio.explain import AudioExplainer
from services.audio.settings import AudioSettings
from services.runtime import (
    AudioLimits,
    Clip,
    ClipReader,
    DynamicBatcher,
    ModelRegistry,
    ServedModel,
    Settings,
    decode_image,
    in_thread,
    invalid_argument,
    resource_exhausted,
    select_device,
)

KINDS = {
    audio_pb2.FEATURE_KIND_UNSPECIFIED: "log_mel",
    audio_pb2.FEATURE_KIND_MAGNITUDE: "magnitude",
    audio_pb2.FEATURE_KIND_POWER: "power",
    audio_pb2.FEATURE_KIND_LOG_MEL: "log_mel",
}
WINDOWS = {
    audio_pb2.WINDOW_KIND_UNSPECIFIED: "hamming",
    audio_pb2.WINDOW_KIND_HAMMING: "hamming",
    audio_pb2.WINDOW_KIND_HANN: "hann",
    audio_pb2.WINDOW_KIND_RECTANGULAR: "rectangular",
}
# A map whose peak is less than this many times its mean has no clear source (a model entry's
# `min_peak_to_mean` option overrides it). The built-in's held-out peak/mean ratios: 26.2 with the
# scene's sound, 1.28 for silence, 1.24 for white noise (models/checkpoints/manifest.json).
DEFAULT_MIN_PEAK_TO_MEAN = 3.0
# Room left in a response for everything but the tensor bytes.
RESPONSE_OVERHEAD_BYTES = 64 * 1024


@dataclass
class FeatureJob:
    clip: Clip
    config: FeatureConfig
    rate: int  # analysis rate


@dataclass
class LocalizeJob:
    image: np.ndarray
    clip: Clip


class AudioServicer(audio_pb2_grpc.AudioServicer):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = select_device(settings.device)
        own = AudioSettings.from_env()
        self.max_stft_cells = own.max_stft_cells
        self.clips = ClipReader(AudioLimits(own.max_seconds, own.max_sample_rate_hz, own.max_channels,
                                            own.max_decoded_samples), setting_prefix="SYN_AUDIO_MAX_")
        self.models = ModelRegistry(settings, "audio", (SOUND_LOCALIZATION,), self._localize_batch)
        # An STFT costs the same per clip batched or not, so feature calls do not wait for company by
        # default (they still share a pass with whatever is already queued).
        self.feature_batcher = DynamicBatcher(
            self._features_batch, max_batch_size=settings.max_batch_size,
            max_wait_ms=own.features_batch_wait_ms, name="audio-features")
        self.explainer = AudioExplainer(self)  # ExplainLocalization (explain.py)

    # --- lifecycle --------------------------------------------------------------------------

    async def warm_up(self) -> None:
        await self.models.warm_up()
        rng = np.random.default_rng(0)
        clip = Clip((0.1 * rng.standard_normal(16000)).astype(np.float32), 16000, "warm-up")
        await self.feature_batcher.run_now([FeatureJob(clip, FeatureConfig(), 16000)])

    async def close(self) -> None:
        await self.feature_batcher.close()
        await self.models.close()
        await self.explainer.close()

    # --- validation -------------------------------------------------------------------------

    def _feature_config(self, options: audio_pb2.FeatureOptions) -> tuple[FeatureConfig, int]:
        """FeatureOptions -> (config, requested analysis rate or 0), defaults applied, each field checked."""
        if options.kind not in KINDS:
            raise invalid_argument("options.kind", f"unknown feature kind {options.kind}")
        if options.window not in WINDOWS:
            raise invalid_argument("options.window", f"unknown window kind {options.window}")
        n_fft = options.n_fft or 512
        if n_fft < 2 or n_fft & (n_fft - 1):
            raise invalid_argument("options.n_fft", f"{n_fft} is not a power of two (>= 2)")
        hop = options.hop_length_samples or max(1, n_fft // 4)
        if not 1 <= hop <= n_fft:
            raise invalid_argument("options.hop_length_samples", f"{hop} is outside 1..n_fft ({n_fft})")
        n_mels = options.n_mels or 64
        if not 1 <= n_mels <= MAX_MELS:
            raise invalid_argument("options.n_mels", f"{n_mels} is outside 1..{MAX_MELS}")
        target = options.target_sample_rate_hz
        if target:
            self.clips.check_rate(target, "options.target_sample_rate_hz")
        config = FeatureConfig(kind=KINDS[options.kind], n_fft=n_fft, hop_length=hop, window=WINDOWS[options.window],
                               n_mels=n_mels, center=options.center)
        return config, target

    def _feature_job(self, clip: Clip, config: FeatureConfig, target: int) -> FeatureJob:
        """Checks that depend on the clip: resampling, n_fft against its length, output size."""
        rate = target or clip.sample_rate
        if not decoding.can_resample(clip.sample_rate, rate):
            raise invalid_argument("options.target_sample_rate_hz",
                                   f"cannot resample {clip.sample_rate} Hz to {rate} Hz: the two rates share too "
                                   "small a common divisor (use a rate such as 8000, 16000, 22050, 44100 or 48000)")
        count = analysed_length(clip.samples.size, clip.sample_rate, rate)
        if config.n_fft > count:
            raise invalid_argument("options.n_fft", f"{config.n_fft} is longer than the clip ({count} samples at "
                                                    f"{rate} Hz)")
        frames = config.frames(count)
        cells = frames * (config.n_fft // 2 + 1)
        if cells > self.max_stft_cells:
            raise resource_exhausted("options.hop_length_samples",
                                     f"the STFT would have {frames} frames x {config.n_fft // 2 + 1} bins = {cells} "
                                     f"cells; the limit is {self.max_stft_cells} (SYN_AUDIO_MAX_STFT_CELLS): raise "
                                     "the hop or send a shorter clip")
        size = 4 * frames * config.bins
        if size > self.settings.max_message_bytes - RESPONSE_OVERHEAD_BYTES:
            raise resource_exhausted("options.hop_length_samples",
                                     f"the features would take {size} bytes, over the response limit of "
                                     f"{self.settings.max_message_bytes} (SYN_MAX_MESSAGE_BYTES): raise the hop")
        return FeatureJob(clip, config, rate)

    # --- device work (batcher threads) ------------------------------------------------------

    def _features_batch(self, jobs: list[FeatureJob]) -> list[np.ndarray | Exception]:
        # Clips of equal length, rate and options are stacked into one STFT call.
        groups: dict[tuple, list[int]] = {}
        for i, job in enumerate(jobs):
            key = (job.clip.samples.size, job.clip.sample_rate, job.rate, job.config)
            groups.setdefault(key, []).append(i)
        results: list[np.ndarray | Exception] = [None] * len(jobs)  # type: ignore[list-item]
        for indices in groups.values():
            try:
                first = jobs[indices[0]]
                samples = torch.from_numpy(np.stack([jobs[i].clip.samples for i in indices])).to(self.device)
                samples = decoding.resample(samples, first.clip.sample_rate, first.rate)
                features = compute(samples, first.rate, first.config).cpu().numpy()
                for i, f in zip(indices, features):
                    results[i] = f
            except Exception as exc:  # delivered to these callers only
                for i in indices:
                    results[i] = exc
        return results

    def _localize_batch(self, served: ServedModel, jobs: list[LocalizeJob]):
        model = served.model
        rate = model.sample_rate
        clips = []
        for job in jobs:
            if job.clip.sample_rate == rate:
                clips.append(job.clip.samples)
                continue
            samples = torch.from_numpy(job.clip.samples).to(self.models.device)
            clips.append(decoding.resample(samples, job.clip.sample_rate, rate).cpu().numpy())
        return model.localize([job.image for job in jobs], clips)

    # --- RPCs -------------------------------------------------------------------------------

    async def _extract(self, clip: Clip, config: FeatureConfig, target: int) -> audio_pb2.ExtractFeaturesResponse:
        job = self._feature_job(clip, config, target)
        features = await self.feature_batcher.submit(job)
        return audio_pb2.ExtractFeaturesResponse(
            features=to_tensor(features),
            frame_rate_hz=job.rate / config.hop,
            frequencies_hz=frequencies_hz(config, job.rate),
            sample_rate_hz=job.rate,
            sample_count=analysed_length(clip.samples.size, clip.sample_rate, job.rate),
        )

    async def ExtractFeatures(self, request, context):
        config, target = self._feature_config(request.options)
        clip = await self.clips.read(request.audio, "audio")
        return await self._extract(clip, config, target)

    async def StreamFeatures(self, request_iterator, context):
        config = target = None
        chunks: list[np.ndarray] = []
        rate = 0
        total = chunk_count = 0
        index = -1
        async for index, message in _enumerate(request_iterator):
            if index == 0:
                config, target = self._feature_config(message.options)
            if not message.HasField("chunk"):
                continue
            chunk = message.chunk
            chunk_count += 1
            self.clips.check_rate(chunk.sample_rate_hz, "chunk.sample_rate_hz")
            if rate and chunk.sample_rate_hz != rate:
                raise invalid_argument("chunk.sample_rate_hz",
                                       f"message {index} has {chunk.sample_rate_hz} Hz but the stream started at "
                                       f"{rate} Hz; every chunk must have the same rate")
            rate = chunk.sample_rate_hz
            samples = self.clips.pcm_samples(chunk.samples_f32le, "chunk.samples_f32le")
            self.clips.check_finite(samples, "chunk.samples_f32le")
            total += samples.size
            self.clips.check_duration(total, rate, "chunk.samples_f32le")
            chunks.append(samples)
        if index < 0:
            raise invalid_argument("chunk", "the stream carried no messages")
        if total == 0:
            raise invalid_argument("chunk.samples_f32le", f"the stream's {index + 1} messages carried no samples")
        clip = Clip(np.concatenate(chunks), rate, "chunk.samples_f32le")
        result = await self._extract(clip, config, target)
        return audio_pb2.StreamFeaturesResponse(result=result, chunk_count=chunk_count)

    async def Localize(self, request, context):
        served = self.models.get(request.model)
        image = np.asarray(await in_thread("decoding the image", decode_image, request.image.data, "image.data",
                                           self.settings))
        height, width = image.shape[:2]
        if 4 * height * width > self.settings.max_message_bytes - RESPONSE_OVERHEAD_BYTES:
            raise resource_exhausted("image.data", f"a {width}x{height} heatmap would exceed the response limit of "
                                                   f"{self.settings.max_message_bytes} bytes (SYN_MAX_MESSAGE_BYTES)")
        clip = await self.clips.read(request.audio, "audio")
        rate, needed = served.model.sample_rate, served.model.min_samples
        if not decoding.can_resample(clip.sample_rate, rate):
            raise invalid_argument(clip.field.replace("samples_f32le", "sample_rate_hz"),
                                   f"cannot resample {clip.sample_rate} Hz to the model's {rate} Hz")
        count = analysed_length(clip.samples.size, clip.sample_rate, rate)
        if count < needed:
            raise invalid_argument(clip.field, f"the clip is {count} samples at {rate} Hz; the model needs at least "
                                               f"{needed} ({1000 * needed / rate:.0f} ms)")
        result = await served.submit(LocalizeJob(image, clip))
        warnings = await in_thread("checking the picture", served.input_warnings, image)
        x0, y0, x1, y1 = result.box
        return audio_pb2.LocalizeResponse(
            heatmap=common_pb2.Heatmap(values=to_tensor(result.heatmap), image_width_px=width,
                                       image_height_px=height),
            box=common_pb2.BoundingBox(x_min_px=x0, y_min_px=y0, x_max_px=x1, y_max_px=y1),
            peak_score=result.peak_score,
            peak_to_mean_ratio=result.peak_to_mean,
            model=served.name,
            warnings=warnings,
            clear_source=bool(result.peak_to_mean >= float(served.entry.option("min_peak_to_mean",
                                                                                 DEFAULT_MIN_PEAK_TO_MEAN))),
        )

    async def ListModels(self, request, context):
        self.models.check_loaded()
        return audio_pb2.ListAudioModelsResponse(models=self.models.infos())

    # --- explanations (explain.py) ----------------------------------------------------------

    async def ExplainLocalization(self, request, context):
        return await self.explainer.explain_localization(request)


def analysed_length(samples: int, rate: int, target: int) -> int:
    """Samples after resampling `samples` from `rate` to `target` (torchaudio's output length)."""
    return samples if rate == target else math.ceil(target * samples / rate)


async def _enumerate(iterator):
    index = 0
    async for item in iterator:
        yield index, item
        index += 1
