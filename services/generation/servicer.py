"""Generation servicer: TextToImage, ImageToImage and ListModels over the model repository's
text-to-image and image-to-image entries (services/runtime/registry.py).

Every model has its own DynamicBatcher. Text-to-image output must be
byte-identical for equal (prompt, seed, count) whatever else shares the batch,
so the noise is drawn per request on the CPU and the built-in generator runs on
fixed-size chunks of SYN_GENERATION_CHUNK rows (models/generation/text2image.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

import torch
from PIL import Image
from synesthesia.v1 import common_pb2, generation_pb2, generation_pb2_grpc

from models.generation.sampling import sample_noise
from models.repository import IMAGE_TO_IMAGE, TEXT_TO_IMAGE
from services.generation.settings import GenerationSettings
from services.runtime import (
    ModelRegistry,
    Settings,
    decode_image,
    in_thread,
    describe_device,
    encode_png,
    invalid_argument,
    not_found,
    resource_exhausted,
)

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 512
MAX_IMAGES = 16
# Words of a closed vocabulary quoted when a prompt has none of them.
SHOWN_VOCABULARY = 40


@dataclass(frozen=True)
class TextJob:
    tokens: tuple
    noise: torch.Tensor  # [n, noise_dim], CPU


@dataclass(frozen=True)
class ImageJob:
    image: Image.Image  # RGB, any size


class GenerationServicer(generation_pb2_grpc.GenerationServicer):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        own = GenerationSettings.from_env()
        self.max_translate_pixels = own.max_translate_pixels
        self.models = ModelRegistry(settings, "generation", (TEXT_TO_IMAGE, IMAGE_TO_IMAGE), self._forward,
                                    default_options={"chunk": own.chunk}, flagged_default_only=(IMAGE_TO_IMAGE,))
        if self.models.device.type == "cuda":
            # Same reason as the fixed chunk: no run-to-run algorithm choice.
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True

    # --- lifecycle -------------------------------------------------------------------------

    async def warm_up(self) -> None:
        # Models not in the repository are simply not served (NOT_FOUND); one that fails to load is a
        # broken install, and its error stops the service.
        await self.models.warm_up()
        if not self.models.names(TEXT_TO_IMAGE):
            log.warning("no text-to-image model in %s; TextToImage will answer NOT_FOUND", self.models.repository)
        log.info("generation models on %s: %s", describe_device(self.models.device),
                 ", ".join(self.models.names()) or "none")

    async def close(self) -> None:
        await self.models.close()

    # --- RPCs ------------------------------------------------------------------------------

    async def TextToImage(self, request, context):
        served = self._model(request.model, TEXT_TO_IMAGE, "TextToImage")
        model = served.model
        prompt = request.prompt
        if not prompt.strip():
            raise invalid_argument("prompt", "is empty; describe the picture, for example 'a large red circle'")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise invalid_argument("prompt", f"is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS}")
        if not 1 <= request.image_count <= MAX_IMAGES:
            raise invalid_argument("image_count", f"must be between 1 and {MAX_IMAGES}; got {request.image_count}")
        tokens, unknown = model.encode_prompt(prompt)
        if not tokens:
            # A closed vocabulary is listed when it is short (DF-GAN's has thousands of words).
            words = model.vocabulary
            known = (f" ({', '.join(words)})" if len(words) <= SHOWN_VOCABULARY
                     else f" ({len(words)} words, e.g. {', '.join(words[:SHOWN_VOCABULARY])})") if words else ""
            raise invalid_argument("prompt", f"none of its words is in the model's vocabulary{known}")
        seed = request.seed or secrets.randbits(63) + 1
        # The model's own noise distribution (DF-GAN's is truncated), row by row from the seed.
        noise = sample_noise(seed, request.image_count, model.noise_dim, getattr(model, "noise_truncation", None))
        images = await served.submit(TextJob(tokens, noise))
        pngs = await asyncio.to_thread(lambda: [encode_png(p) for p in images])
        return generation_pb2.TextToImageResponse(
            images=[common_pb2.Image(data=png) for png in pngs], seed=seed, unknown_words=unknown, model=served.name
        )

    async def ImageToImage(self, request, context):
        served = self._model(request.model, IMAGE_TO_IMAGE, "ImageToImage")
        image = await in_thread("decoding the image", decode_image, request.image.data, "image.data",
                                self.settings)
        width, height = self._work_size(served, image)
        if width * height > self.max_translate_pixels:
            raise resource_exhausted("image.data", f"a {image.width}x{image.height} image runs through "
                                     f"'{served.name}' at {width}x{height} ({width * height:,} pixels), over "
                                     f"SYN_GENERATION_MAX_TRANSLATE_PIXELS ({self.max_translate_pixels:,}); "
                                     "send a smaller image")
        pixels = await served.submit(ImageJob(image))
        png = await in_thread("encoding the image", encode_png, pixels)
        warnings = await in_thread("checking the picture", served.input_warnings, image)
        return generation_pb2.ImageToImageResponse(image=common_pb2.Image(data=png), model=served.name,
                                                   warnings=warnings)

    async def ListModels(self, request, context):
        self.models.check_loaded()
        return generation_pb2.ListGenerationModelsResponse(models=self.models.infos())

    # --- helpers ---------------------------------------------------------------------------

    def _model(self, requested: str, task: str, rpc: str):
        """The named model of `task`; a model of the other task is pointed to its RPC."""
        self.models.check_loaded()
        other = self.models.models.get(requested)
        if other is not None and other.task != task:
            call = "TextToImage" if other.task == TEXT_TO_IMAGE else "ImageToImage"
            raise invalid_argument("model", f"'{requested}' is a {other.task} model; call {call}")
        if not requested and not self.models.names(task):
            raise not_found("model", f"no {task} model on this server: the model repository "
                                     f"{self.models.repository} has none (the built-in one is 'text2image')"
                            if task == TEXT_TO_IMAGE else f"no {task} model on this server")
        if not requested and not self.models.default(task):
            raise invalid_argument("model", f"is required for {rpc}: one of {', '.join(self.models.names(task))}")
        if requested and other is None:
            raise not_found("model", f"no {task} model '{requested}' on this server; loaded: "
                                     f"{', '.join(self.models.names(task)) or 'none'}")
        return self.models.get(requested, "model", task)

    # --- the batch function (the model's batcher thread, inference mode) -------------------

    @staticmethod
    def _work_size(served, image: Image.Image) -> tuple[int, int]:
        """The size the model runs `image` at (models/generation/interface.py)."""
        return served.model.work_size(image.width, image.height)

    def _forward(self, served, jobs: list) -> list:
        if served.task == TEXT_TO_IMAGE:
            return served.model.generate([job.tokens for job in jobs], [job.noise for job in jobs])
        # Sub-batches of at most SYN_GENERATION_MAX_TRANSLATE_PIXELS, so a full batch of large images
        # costs what one of the largest does.
        out, chunk, pixels = [], [], 0
        for job in jobs:
            width, height = self._work_size(served, job.image)
            if chunk and pixels + width * height > self.max_translate_pixels:
                out += served.model.translate_images(chunk)
                chunk, pixels = [], 0
            chunk.append(job.image)
            pixels += width * height
        return out + served.model.translate_images(chunk)
