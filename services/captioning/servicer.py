"""The Captioning service: captions with per-word attention, unary and streamed, from the built-in
Show-Attend-Tell checkpoint and optionally a local transformers VisionEncoderDecoderModel.

Requests are validated on the event loop; images are decoded and resized in the
batch function, in the model thread (no hop to a decoding thread per call); all
decoding runs in one DynamicBatcher, whose batch function runs a single beam search over every built-in request in the batch (each with its own
beam width and length limit) and one `generate` per (beam, limit) group for the
transformers model.

StreamCaption streams a word as soon as every live beam and every finished
hypothesis agree on it (decoding.py's `on_settled`), so the streamed words are
the unary caption's words. A word is sent when the next one settles (or the
caption ends) so that the last message can carry `is_final`. The transformers
backend decodes first, then streams.

Environment: SYN_CAPTIONING_MODELS (built-in checkpoints, comma-separated, the
first is the default; default `captioning`; empty for none),
SYN_CAPTIONING_HF_DIR (a VisionEncoderDecoderModel directory; model name =
the directory's basename or SYN_CAPTIONING_HF_NAME),
SYN_CAPTIONING_LENGTH_PENALTY (beam length normalisation exponent, default 1).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from synesthesia.tensors import to_tensor
from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2

from models.captioning.checkpoint import load_captioner
from models.captioning.decoding import MAX_BEAM_SIZE, DecodedCaption, DecodedWord, beam_search
from models.images import images_to_batch
from models.training import LoadedModel
from services.captioning.explain import CaptioningExplainer
from services.captioning.settings import CaptioningSettings
from services.runtime import (
    FIT_FOR_MODELS_PX,
    DynamicBatcher,
    Settings,
    backend_infos,
    decodes_inline,
    image_from_message,
    in_thread,
    source_size,
    invalid_argument,
    not_found,
    select_device,
    unavailable,
)
from services.runtime.acceleration import Acceleration

DEFAULT_BEAM_SIZE = 3
DEFAULT_MAX_LENGTH = 20
MAX_LENGTH = 50


@dataclass
class CaptionJob:
    model: str
    pixels: torch.Tensor | None  # [3, H, W] prepared for that model, or None: decode `image` in the batch
    beam_size: int
    max_length: int
    # Called from the batcher thread with words as they settle (streaming only).
    on_settled: Callable[[list[DecodedWord]], None] | None = field(default=None, repr=False)
    # The request's image, decoded in the batch (the model thread) when `pixels` is None.
    image: common_pb2.Image | None = field(default=None, repr=False)
    # Set in the model thread once the image is decoded (attention maps refer to this size).
    width: int = 0
    height: int = 0


@dataclass
class Backend:
    name: str
    kind: int  # common_pb2.ModelBackend
    prepare: Callable[[Image.Image], torch.Tensor]
    sha256: str = ""
    metrics: dict = field(default_factory=dict)
    parameter_count: int = 0
    builtin: LoadedModel | None = None
    transformers: object | None = None  # TransformersCaptioner


class CaptioningServicer(captioning_pb2_grpc.CaptioningServicer):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = select_device(settings.device)
        self.own = CaptioningSettings.from_env()
        self.builtin_names = list(self.own.models)
        self.hf_dir = self.own.hf_dir
        self.hf_name = self.own.hf_name
        self.length_penalty = self.own.length_penalty
        self.acceleration = Acceleration.from_settings(settings)
        self.models: dict[str, Backend] = {}
        self.default_model = ""  # set once the models are loaded
        self.batcher = DynamicBatcher(self._caption_batch, max_batch_size=settings.max_batch_size,
                                      max_wait_ms=settings.max_batch_wait_ms, name="captioning")
        self.explainer = CaptioningExplainer(self)  # ExplainCaption and the judge (explain.py)

    # --- lifecycle --------------------------------------------------------------------------

    def _load(self) -> None:
        for name in self.builtin_names:
            loaded = load_captioner(name, directory=self.settings.checkpoint_dir, device=self.device)
            self.acceleration.module(loaded.model)
            loaded.model.encode = self.acceleration.function(loaded.model.encode)
            size = loaded.model.config.image_size
            self.models[name] = Backend(
                name, common_pb2.MODEL_BACKEND_BUILTIN,
                lambda image, size=size: images_to_batch([np.asarray(image)], size)[0],
                loaded.sha256, loaded.metrics, loaded.parameter_count, builtin=loaded)
        if self.hf_dir:
            from models.captioning.transformers_backend import TransformersCaptioner

            captioner = TransformersCaptioner(self.hf_dir, self.device)
            name = self.hf_name or os.path.basename(os.path.normpath(self.hf_dir))
            self.models[name] = Backend(name, common_pb2.MODEL_BACKEND_TRANSFORMERS, captioner.prepare,
                                        parameter_count=captioner.parameter_count, transformers=captioner)
        if not self.models:
            raise SystemExit("no captioning model: set SYN_CAPTIONING_MODELS and/or SYN_CAPTIONING_HF_DIR")
        self.default_model = next(iter(self.models))

    async def warm_up(self) -> None:
        await asyncio.to_thread(self._load)
        await asyncio.to_thread(self.explainer.load)
        image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
        jobs = [CaptionJob(name, backend.prepare(image), DEFAULT_BEAM_SIZE, 5) for name, backend in self.models.items()]
        await self.batcher.run_now(jobs)

    async def close(self) -> None:
        await self.batcher.close()
        await self.explainer.close()

    # --- device work (batcher thread) -------------------------------------------------------

    def _caption_batch(self, jobs: list[CaptionJob]) -> list[DecodedCaption | Exception]:
        results: list[DecodedCaption | Exception] = [None] * len(jobs)  # type: ignore[list-item]
        by_model: dict[str, list[int]] = {}
        prepared: dict[int, torch.Tensor] = {}
        for i, job in enumerate(jobs):
            if job.pixels is not None:
                prepared[i] = job.pixels
                continue
            # Decoding here, in the model thread, saves each call a hop to a decoding thread and back;
            # a bad image fails its own call only.
            try:
                image = image_from_message(job.image, "image", self.settings, FIT_FOR_MODELS_PX)
                job.width, job.height = source_size(image)  # heatmaps at the size sent, not the shrunk one
                prepared[i] = self.models[job.model].prepare(image)
            except Exception as exc:  # noqa: BLE001 - delivered to this caller
                results[i] = exc
        for i in range(len(jobs)):
            if i in prepared:
                by_model.setdefault(jobs[i].model, []).append(i)
        for name, indices in by_model.items():
            backend = self.models[name]
            try:
                pixels = self.acceleration.images(torch.stack([prepared[i] for i in indices]).to(self.device))
                beams = [jobs[i].beam_size for i in indices]
                limits = [jobs[i].max_length for i in indices]
                if backend.builtin is not None:
                    def settled(row: int, words: list[DecodedWord], indices=indices) -> None:
                        callback = jobs[indices[row]].on_settled
                        if callback is not None:
                            callback(words)

                    # Settled-word bookkeeping costs every step; a group of unary calls skips it.
                    streaming = any(jobs[i].on_settled is not None for i in indices)
                    with self.acceleration.autocasting(self.device):
                        found = beam_search(backend.builtin.model, pixels, beams, limits, self.length_penalty,
                                            on_settled=settled if streaming else None)
                else:
                    found = backend.transformers.caption(pixels, beams, limits)
                for i, caption in zip(indices, found):
                    results[i] = caption
            except Exception as exc:  # delivered to this model's callers only
                for i in indices:
                    results[i] = exc
        return results

    # --- validation -------------------------------------------------------------------------

    def _check_loaded(self) -> None:
        # The runtime reports NOT_SERVING until warm-up ends, but a client that skips the health
        # check can still reach us earlier.
        if not self.default_model:
            raise unavailable("the captioning models are still loading; retry shortly")

    def _options(self, options: captioning_pb2.CaptionOptions) -> tuple[str, int, int]:
        self._check_loaded()
        beam = options.beam_size or DEFAULT_BEAM_SIZE
        if not 1 <= beam <= MAX_BEAM_SIZE:
            raise invalid_argument("options.beam_size", f"{options.beam_size} is outside 1..{MAX_BEAM_SIZE} "
                                                        f"(0 = default {DEFAULT_BEAM_SIZE})")
        length = options.max_length_words or DEFAULT_MAX_LENGTH
        if not 1 <= length <= MAX_LENGTH:
            raise invalid_argument("options.max_length_words", f"{options.max_length_words} is outside "
                                                               f"1..{MAX_LENGTH} (0 = default {DEFAULT_MAX_LENGTH})")
        name = options.model or self.default_model
        if name not in self.models:
            raise not_found("options.model", f"unknown model {options.model!r}; loaded: {', '.join(self.models)}")
        return name, beam, length

    async def _job(self, request) -> CaptionJob:
        name, beam, length = self._options(request.options)
        job = CaptionJob(name, None, beam, length, image=request.image)
        if not decodes_inline([request.image]):
            # A big file would hold up its whole batch while it decodes: decode it in a thread first.
            def prepare() -> None:
                image = image_from_message(request.image, "image", self.settings, FIT_FOR_MODELS_PX)
                job.width, job.height = source_size(image)  # heatmaps at the size sent, not the shrunk one
                job.pixels = self.models[name].prepare(image)

            await in_thread("decoding the image", prepare)
        return job

    @staticmethod
    def _unwrap(result):
        if isinstance(result, Exception):
            raise result
        return result

    # --- responses --------------------------------------------------------------------------

    @staticmethod
    def _word(word: DecodedWord, attention: bool, width: int, height: int) -> captioning_pb2.CaptionWord:
        out = captioning_pb2.CaptionWord(text=word.text, log_probability=word.log_prob)
        if attention and word.attention is not None and word.attention.size:
            out.attention.CopyFrom(common_pb2.Heatmap(values=to_tensor(word.attention), image_width_px=width,
                                                      image_height_px=height))
        return out

    # --- RPCs -------------------------------------------------------------------------------

    async def Caption(self, request, context):
        job = await self._job(request)
        caption = self._unwrap(await self.batcher.submit(job))
        return captioning_pb2.CaptionResponse(
            caption=caption.text, log_probability=caption.log_prob, model=job.model,
            words=[self._word(w, request.include_attention, job.width, job.height) for w in caption.words])

    async def StreamCaption(self, request, context):
        job = await self._job(request)
        loop = asyncio.get_running_loop()
        settled: asyncio.Queue[list[DecodedWord]] = asyncio.Queue()
        job.on_settled = lambda words: loop.call_soon_threadsafe(settled.put_nowait, words)
        decoding = asyncio.ensure_future(self.batcher.submit(job))
        pending: list[DecodedWord] = []  # settled, not yet sent: the newest waits so the last can be final
        sent = 0
        try:
            while not decoding.done():
                waiter = asyncio.ensure_future(settled.get())
                await asyncio.wait({waiter, decoding}, return_when=asyncio.FIRST_COMPLETED)
                if not waiter.done():
                    waiter.cancel()
                    break
                pending.extend(waiter.result())
                while len(pending) > 1:
                    yield captioning_pb2.StreamCaptionResponse(
                        word=self._word(pending.pop(0), request.include_attention, job.width, job.height), index=sent)
                    sent += 1
            caption = self._unwrap(await decoding)
        finally:
            if not decoding.done():
                decoding.cancel()
        remaining = caption.words[sent:]
        if not remaining:  # an empty caption: one final message without a word
            yield captioning_pb2.StreamCaptionResponse(index=sent, is_final=True)
            return
        for offset, word in enumerate(remaining):
            yield captioning_pb2.StreamCaptionResponse(
                word=self._word(word, request.include_attention, job.width, job.height), index=sent + offset,
                is_final=offset == len(remaining) - 1)

    async def ListModels(self, request, context):
        self._check_loaded()
        return captioning_pb2.ListCaptioningModelsResponse(models=backend_infos(
            self.models, task="captioning", device=self.device, default=self.default_model))

    # --- explanations (explain.py) ----------------------------------------------------------

    async def ExplainCaption(self, request, context):
        return await self.explainer.explain_caption(request)

    async def ExplainJudge(self, request, context):
        return await self.explainer.explain_judge(request)

    async def VisualizeJudge(self, request, context):
        return await self.explainer.visualize_judge(request)
