"""The Gateway servicer: Describe, Imagine, Listen, Translate, RunPipeline and CheckUpstreams.

Each RPC is a short chain of upstream calls (see upstreams.py for deadlines,
retries and error naming); independent calls inside a chain run concurrently.
The upstreams' own services are forwarded as they are (forwarding.py), so one
published port reaches everything. Readiness follows the upstreams: the
gateway is SERVING while any of them is (some of its calls can be served),
NOT_SERVING when none is, and its health service answers for each forwarded
service (`synesthesia.v1.Embedding`, ...) with that upstream's own state.
Imagine and Translate return what was generated, with `warnings`, when only a
later step (captioning, embedding) fails. Image decoding, cropping and PNG
encoding run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import numpy as np

from grpc_health.v1 import health_pb2

from services.gateway import explain, pipeline
from services.gateway.forwarding import forwarding_handlers
from services.gateway.settings import GatewaySettings
from services.gateway.upstreams import Upstream, call, connect
from services.runtime import ServiceError, Settings, decode_image, encode_png, in_thread, invalid_argument
from synesthesia.tensors import from_tensor
from synesthesia.v1 import (
    audio_pb2,
    captioning_pb2,
    common_pb2,
    embedding_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    generation_pb2,
)

log = logging.getLogger(__name__)
MAX_PROMPT_CHARS = 512
NO_CLEAR_SOURCE = "no clear source: the sound does not stand out anywhere in the picture"


def listen_summary(caption: str) -> str:
    """The sentence Listen answers with: the captioner's own words for the sounding region, quoted
    as they are (the gateway knows no model's grammar)."""
    return f"the sound comes from the marked region: {caption.strip()}" if caption.strip() else \
        "the sound comes from the marked region (its captioner gave no words)"


def isolate_box(pixels: np.ndarray, box: common_pb2.BoundingBox, margin_px: int = 3) -> np.ndarray:
    """Keep the box (plus a margin) where it is and paint the rest with the background.

    The captioner was trained on whole scenes at native scale, so it reads an
    object best at its own size and place, alone on the scene's background.
    """
    height, width = pixels.shape[:2]
    x0 = max(0, int(np.floor(box.x_min_px)) - margin_px)
    y0 = max(0, int(np.floor(box.y_min_px)) - margin_px)
    x1 = min(width, int(np.ceil(box.x_max_px)) + margin_px)
    y1 = min(height, int(np.ceil(box.y_max_px)) + margin_px)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    out = np.empty_like(pixels)
    out[:] = np.median(border, axis=0).astype(np.uint8)
    out[y0:y1, x0:x1] = pixels[y0:y1, x0:x1]
    return out


def later_step_warnings(outcomes: dict[str, object]) -> list[str]:
    """One warning per later step that failed with an upstream error; anything else is re-raised."""
    warnings = []
    for step, outcome in outcomes.items():
        if isinstance(outcome, ServiceError) and outcome.code not in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                                                     grpc.StatusCode.CANCELLED):
            log.warning("partial result: %s failed: %s", step, outcome.message)
            warnings.append(f"{step} failed ({outcome.code.name}): {outcome.message}")
        elif isinstance(outcome, BaseException):
            raise outcome
    return warnings


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        own = GatewaySettings.from_env()
        self.upstreams: dict[str, Upstream] = connect(settings, own)
        self.health_interval_s = own.health_interval_s
        self.upstream_status: dict[str, bool] = {name: False for name in self.upstreams}
        self.pipeline_limits = pipeline.PipelineLimits.from_env()

    @property
    def forwarded_services(self) -> tuple[str, ...]:
        """The upstreams' gRPC services this gateway also serves (reflection lists them)."""
        return tuple(u.service.grpc_service for u in self.upstreams.values())

    def add_to_server(self, server) -> None:
        gateway_pb2_grpc.add_GatewayServicer_to_server(self, server)
        server.add_generic_rpc_handlers(forwarding_handlers(self.upstreams))

    async def watch_readiness(self, set_ready) -> None:
        while True:
            results = await asyncio.gather(*(u.serving() for u in self.upstreams.values()))
            changed = dict(zip(self.upstreams, results)) != self.upstream_status
            self.upstream_status = dict(zip(self.upstreams, results))
            if changed:
                down = [n for n, ok in self.upstream_status.items() if not ok]
                log.info("upstreams down: %s", ", ".join(down) or "none")
            for upstream, ok in zip(self.upstreams.values(), results):
                await set_ready(ok, upstream.service.grpc_service)
            # SERVING while any call can be served: with one upstream down the others' calls still work,
            # and an orchestrator must not restart a gateway that only waits for one upstream. Each
            # upstream's own state is under its service name (above) for the callers that need it.
            await set_ready(any(results))
            await asyncio.sleep(self.health_interval_s)

    # -- helpers -------------------------------------------------------------------------------------

    async def _image(self, image: common_pb2.Image, field: str) -> np.ndarray:
        """Decoded pixels, in a worker thread: the event loop keeps serving other calls and probes."""
        return await in_thread("decoding the image", lambda: np.asarray(decode_image(image.data, field,
                                                                                     self.settings)))

    async def _caption(self, image_png: bytes, context, *, attention: bool = False, beam_size: int = 0,
                       model: str = ""):
        request = captioning_pb2.CaptionRequest(
            image=common_pb2.Image(data=image_png),
            options=captioning_pb2.CaptionOptions(beam_size=beam_size, model=model),
            include_attention=attention,
        )
        return await call(self.upstreams["captioning"], "Caption", request, context)

    # -- RPCs ----------------------------------------------------------------------------------------

    async def Describe(self, request, context):
        await self._image(request.image, "image.data")  # refuse a bad image before fanning out
        if not 0 <= request.beam_size <= 10:
            raise invalid_argument("beam_size", "must be 0 (default) to 10")
        if not 0 <= request.top_k <= 100:
            raise invalid_argument("top_k", "must be 0 to 100")
        caption = self._caption(request.image.data, context, attention=True, beam_size=request.beam_size,
                                model=request.model)
        if not request.collection:
            return gateway_pb2.DescribeResponse(caption=await caption)
        search = call(self.upstreams["embedding"], "Search", embedding_pb2.SearchRequest(
            collection=request.collection, image=request.image, top_k=request.top_k or 5), context)
        caption_reply, search_reply = await asyncio.gather(caption, search)
        return gateway_pb2.DescribeResponse(caption=caption_reply, neighbours=search_reply.hits)

    async def Imagine(self, request, context):
        prompt = request.prompt.strip()
        if not prompt:
            raise invalid_argument("prompt", "must not be empty")
        if len(request.prompt) > MAX_PROMPT_CHARS:
            raise invalid_argument("prompt", f"must be at most {MAX_PROMPT_CHARS} characters")
        count = request.image_count or 1
        if not 1 <= count <= 16:
            raise invalid_argument("image_count", "must be 0 (one image) to 16")
        generated = await call(self.upstreams["generation"], "TextToImage", generation_pb2.TextToImageRequest(
            prompt=prompt, image_count=count, seed=request.seed, model=request.model), context)
        # The images are the result; captions and agreements describe them. When only those later steps
        # fail, the images still come back, with a warning per failed step.
        captions, image_vectors, text_vector = await asyncio.gather(
            asyncio.gather(*(self._caption(img.data, context, model=request.captioning_model)
                             for img in generated.images)),
            call(self.upstreams["embedding"], "EmbedImages",
                 embedding_pb2.EmbedImagesRequest(images=generated.images, model=request.embedding_model), context),
            call(self.upstreams["embedding"], "EmbedTexts",
                 embedding_pb2.EmbedTextsRequest(texts=[prompt], model=request.embedding_model), context),
            return_exceptions=True)
        warnings = later_step_warnings({"captioning": captions, "embedding": image_vectors,
                                        "embedding (prompt)": text_vector})
        count = len(generated.images)
        texts = [c.caption for c in captions] if not isinstance(captions, BaseException) else [""] * count
        if isinstance(image_vectors, BaseException) or isinstance(text_vector, BaseException):
            agreement = [0.0] * count
        else:
            agreement = from_tensor(image_vectors.embeddings) @ from_tensor(text_vector.embeddings)[0]
        return gateway_pb2.ImagineResponse(
            images=[
                gateway_pb2.ImaginedImage(image=img, caption=text, prompt_agreement=float(score))
                for img, text, score in zip(generated.images, texts, agreement)
            ],
            seed=generated.seed,
            unknown_words=generated.unknown_words,
            warnings=warnings,
            model=generated.model,
        )

    async def Listen(self, request, context):
        pixels = await self._image(request.image, "image.data")
        if not request.audio.WhichOneof("source"):
            raise invalid_argument("audio", "set audio.encoded or audio.pcm")
        located = await call(self.upstreams["audio"], "Localize", audio_pb2.LocalizeRequest(
            image=request.image, audio=request.audio, model=request.model), context)
        answer = gateway_pb2.ListenResponse(heatmap=located.heatmap, box=located.box, peak_score=located.peak_score,
                                            clear_source=located.clear_source, warnings=located.warnings,
                                            model=located.model)
        if not located.clear_source:
            answer.summary = NO_CLEAR_SOURCE
            return answer
        isolated = await in_thread("encoding the crop", lambda: encode_png(isolate_box(pixels, located.box)))
        caption = await self._caption(isolated, context, model=request.captioning_model)
        answer.caption = caption.caption
        answer.summary = listen_summary(caption.caption)
        answer.warnings.extend(w for w in caption.warnings if w not in answer.warnings)
        return answer

    async def Translate(self, request, context):
        await self._image(request.image, "image.data")
        translated = await call(self.upstreams["generation"], "ImageToImage", generation_pb2.ImageToImageRequest(
            image=request.image, model=request.model), context)
        (caption,) = await asyncio.gather(self._caption(translated.image.data, context,
                                                        model=request.captioning_model), return_exceptions=True)
        failed = later_step_warnings({"captioning": caption})
        # The translator's notes on its input first, then the captioner's on the result.
        warnings = list(translated.warnings) + failed
        if not failed:
            warnings += [w for w in caption.warnings if w not in warnings]
        return gateway_pb2.TranslateResponse(image=translated.image, warnings=warnings, model=translated.model,
                                             caption="" if failed else caption.caption)

    async def RunPipeline(self, request, context):
        # Parsing is bounded (pipeline.PipelineLimits) and still runs in a thread: the loop serves probes.
        plan = await in_thread("parsing the pipeline", pipeline.parse, request.spec, set(request.inputs),
                               self.pipeline_limits)
        async for event in pipeline.run(plan, dict(request.inputs), self.upstreams, context, self.pipeline_limits):
            yield event

    async def CheckUpstreams(self, request, context):
        async def check(upstream: Upstream) -> gateway_pb2.UpstreamHealth:
            started = time.perf_counter()
            status, why = await upstream.check(timeout_s=min(2.0, context.time_remaining() or 2.0))
            state = (gateway_pb2.UPSTREAM_STATE_UNREACHABLE if status is None
                     else gateway_pb2.UPSTREAM_STATE_SERVING if status == health_pb2.HealthCheckResponse.SERVING
                     else gateway_pb2.UPSTREAM_STATE_NOT_SERVING)
            return gateway_pb2.UpstreamHealth(
                name=upstream.name, service=upstream.service.grpc_service, target=upstream.target, state=state,
                detail=why, latency_ms=(time.perf_counter() - started) * 1000)

        return gateway_pb2.CheckUpstreamsResponse(
            upstreams=await asyncio.gather(*(check(u) for u in self.upstreams.values())))

    async def Explain(self, request, context):
        return await explain.explain(self.upstreams, request, context)

    async def close(self) -> None:
        await asyncio.gather(*(u.channel.close() for u in self.upstreams.values()))

