"""The Captioning service: captions with per-word attention, unary and streamed, from every
captioning model of the model repository (the built-in Show-Attend-Tell checkpoint and any
Hugging Face captioner; services/runtime/registry.py).

Requests are validated on the event loop; images are decoded and prepared in a
thread; each model decodes in its own DynamicBatcher, whose batch function hands the
whole batch to the model's `caption` (models/captioning/interface.py): one beam
search over every request (each with its own beam width and length limit) for the
built-in, one `generate` per (beam, limit) group for transformers models.

StreamCaption streams a word as soon as every live beam and every finished
hypothesis agree on it (decoding.py's `on_settled`), so the streamed words are
the unary caption's words. A word is sent when the next one settles (or the
caption ends) so that the last message can carry `is_final`. The transformers
backend decodes first, then streams.

Environment: SYN_MODEL_REPOSITORY (the entries), SYN_CAPTIONING_MODELS (entries
to serve, comma-separated; default: every captioning entry), SYN_CAPTIONING_HF_DIR
(shorthand for one Hugging Face captioner directory; model name = the
directory's basename or SYN_CAPTIONING_HF_NAME),
SYN_CAPTIONING_LENGTH_PENALTY (beam length normalisation exponent, default 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from synesthesia.tensors import to_tensor
from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2

from models.captioning.decoding import MAX_BEAM_SIZE, DecodedCaption, DecodedWord
from models.repository import CAPTIONING
from services.captioning.explain import CaptioningExplainer
from services.captioning.settings import CaptioningSettings
from services.runtime import (
    FIT_FOR_MODELS_PX,
    SET_IN_BATCH,
    ModelRegistry,
    ServedModel,
    Settings,
    decodes_inline,
    image_from_message,
    in_thread,
    source_size,
    invalid_argument,
)

DEFAULT_BEAM_SIZE = 3
DEFAULT_MAX_LENGTH = 20
MAX_LENGTH = 50


@dataclass
class CaptionJob:
    pixels: torch.Tensor | None  # [3, H, W] prepared for its model, or None: decode `image` in the batch
    beam_size: int
    max_length: int
    # Called from the batcher thread with words as they settle (streaming only).
    on_settled: Callable[[list[DecodedWord]], None] | None = field(default=None, repr=False)
    # The request's image, decoded in the batch (the model thread) when `pixels` is None.
    image: common_pb2.Image | None = field(default=None, repr=False)
    # Set once the image is decoded (attention maps refer to this size), with the model's notes on it.
    width: int = field(default=0, metadata=SET_IN_BATCH)
    height: int = field(default=0, metadata=SET_IN_BATCH)
    warnings: list[str] = field(default_factory=list, metadata=SET_IN_BATCH)


class CaptioningServicer(captioning_pb2_grpc.CaptioningServicer):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.own = CaptioningSettings.from_env()
        self.models = ModelRegistry(settings, "captioning", (CAPTIONING,), self._caption_batch,
                                    shorthands={"CAPTIONING_HF_DIR": CAPTIONING},
                                    default_options={"length_penalty": self.own.length_penalty})
        self.device = self.models.device
        self.explainer = CaptioningExplainer(self)  # ExplainCaption and the judge (explain.py)

    # --- lifecycle --------------------------------------------------------------------------

    async def warm_up(self) -> None:
        await self.models.warm_up()
        if not self.models.names():
            raise SystemExit("no captioning model: add an entry to the model repository, or set "
                             "SYN_CAPTIONING_MODELS and/or SYN_CAPTIONING_HF_DIR")
        await asyncio.to_thread(self.explainer.load)

    async def close(self) -> None:
        await self.models.close()
        await self.explainer.close()

    # --- device work (the model's batcher thread) -------------------------------------------

    def _prepare(self, served: ServedModel, jobs: list[CaptionJob]) -> list[Exception | None]:
        """Decode each job's image, note what the model has to say about it and make it model input; a
        bad image fails its own job only (its exception, in job order). The notes are decided for all
        the images together (the built-ins' out-of-world check is cheaper per picture over a batch)."""
        failures: list[Exception | None] = [None] * len(jobs)
        decoded = []
        for i, job in enumerate(jobs):
            try:
                image = image_from_message(job.image, "image", self.settings, FIT_FOR_MODELS_PX)
                job.width, job.height = source_size(image)  # heatmaps at the size sent, not the shrunk one
                decoded.append((i, image))
            except Exception as exc:  # noqa: BLE001 - delivered to this caller
                failures[i] = exc
        notes = served.input_warnings_each([image for _, image in decoded])
        for (i, image), note in zip(decoded, notes):
            try:
                if isinstance(note, Exception):
                    raise note
                jobs[i].warnings = note
                jobs[i].pixels = served.model.prepare(image)
            except Exception as exc:  # noqa: BLE001 - delivered to this caller
                failures[i] = exc
        return failures

    def _caption_batch(self, served: ServedModel, jobs: list[CaptionJob]) -> list[DecodedCaption | Exception]:
        # Small images are decoded here, in the model thread: no hop to a decoding thread and back per call.
        raw = [i for i, job in enumerate(jobs) if job.pixels is None]
        results: list[DecodedCaption | Exception] = [None] * len(jobs)  # type: ignore[list-item]
        for i, failure in zip(raw, self._prepare(served, [jobs[i] for i in raw])):
            results[i] = failure
        ready = [i for i in range(len(jobs)) if results[i] is None]
        if not ready:
            return results

        def settled(row: int, words: list[DecodedWord]) -> None:
            callback = jobs[ready[row]].on_settled
            if callback is not None:
                callback(words)

        # Settled-word bookkeeping costs every step; a batch of unary calls skips it.
        streaming = any(jobs[i].on_settled is not None for i in ready)
        found = served.model.caption(torch.stack([jobs[i].pixels for i in ready]), [jobs[i].beam_size for i in ready],
                                     [jobs[i].max_length for i in ready], on_settled=settled if streaming else None)
        for i, caption in zip(ready, found):
            results[i] = caption
        return results

    # --- validation -------------------------------------------------------------------------

    def _options(self, options: captioning_pb2.CaptionOptions) -> tuple[ServedModel, int, int]:
        served = self.models.get(options.model, "options.model")
        beam = options.beam_size or DEFAULT_BEAM_SIZE
        if not 1 <= beam <= MAX_BEAM_SIZE:
            raise invalid_argument("options.beam_size", f"{options.beam_size} is outside 1..{MAX_BEAM_SIZE} "
                                                        f"(0 = default {DEFAULT_BEAM_SIZE})")
        length = options.max_length_words or DEFAULT_MAX_LENGTH
        if not 1 <= length <= MAX_LENGTH:
            raise invalid_argument("options.max_length_words", f"{options.max_length_words} is outside "
                                                               f"1..{MAX_LENGTH} (0 = default {DEFAULT_MAX_LENGTH})")
        return served, beam, length

    async def _job(self, request) -> tuple[ServedModel, CaptionJob]:
        served, beam, length = self._options(request.options)
        job = CaptionJob(None, beam, length, image=request.image)
        if not decodes_inline([request.image]):
            # A big file would hold up its whole batch while it decodes: decode it in a thread first.
            (failure,) = await in_thread("decoding the image", self._prepare, served, [job])
            if failure is not None:
                raise failure
        return served, job

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
        served, job = await self._job(request)
        caption = await served.submit(job)
        return captioning_pb2.CaptionResponse(
            caption=caption.text, log_probability=caption.log_prob, model=served.name, warnings=job.warnings,
            words=[self._word(w, request.include_attention, job.width, job.height) for w in caption.words])

    async def StreamCaption(self, request, context):
        served, job = await self._job(request)
        loop = asyncio.get_running_loop()
        settled: asyncio.Queue[list[DecodedWord]] = asyncio.Queue()
        job.on_settled = lambda words: loop.call_soon_threadsafe(settled.put_nowait, words)
        decoding = asyncio.ensure_future(served.submit(job))
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
                        word=self._word(pending.pop(0), request.include_attention, job.width, job.height),
                        index=sent)
                    sent += 1
            caption = await decoding
        finally:
            if not decoding.done():
                decoding.cancel()
        remaining = caption.words[sent:]
        if not remaining:  # an empty caption: one final message without a word
            yield captioning_pb2.StreamCaptionResponse(index=sent, is_final=True, warnings=job.warnings)
            return
        for offset, word in enumerate(remaining):
            final = offset == len(remaining) - 1
            yield captioning_pb2.StreamCaptionResponse(
                word=self._word(word, request.include_attention, job.width, job.height), index=sent + offset,
                is_final=final, warnings=job.warnings if final else [])

    async def ListModels(self, request, context):
        self.models.check_loaded()
        return captioning_pb2.ListCaptioningModelsResponse(models=self.models.infos())

    # --- explanations (explain.py) ----------------------------------------------------------

    async def ExplainCaption(self, request, context):
        return await self.explainer.explain_caption(request)

    async def ExplainJudge(self, request, context):
        return await self.explainer.explain_judge(request)

    async def VisualizeJudge(self, request, context):
        return await self.explainer.visualize_judge(request)
