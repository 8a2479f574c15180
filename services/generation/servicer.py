"""Generation servicer: TextToImage, ImageToImage and ListModels over the built-in GANs.

Every model call goes through one DynamicBatcher (one worker thread, one
device); the batch function groups the queued requests by model. Text-to-image
output must be byte-identical for equal (prompt, seed, count) whatever else
shares the batch, so the noise is drawn per request on the CPU and the
generator always runs on fixed-size chunks (see `_generate`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from synesthesia.v1 import common_pb2, generation_pb2, generation_pb2_grpc

from models.generation.image_to_image import available_image_to_image_models, load_image_to_image
from models.generation.text2image import CHECKPOINT_NAME as TEXT2IMAGE
from models.generation.text2image import Text2Image, load_text2image, parameter_count
from models.training import read_manifest
from services.generation.settings import GenerationSettings
from services.runtime import (
    DynamicBatcher,
    Settings,
    decode_image,
    in_thread,
    describe_device,
    encode_png,
    invalid_argument,
    model_info,
    not_found,
    select_device,
)

log = logging.getLogger(__name__)

IMAGE_TO_IMAGE = ("sketch2photo", "day2night", "night2day")
MAX_PROMPT_CHARS = 512
MAX_IMAGES = 16
# Generator calls always see this many rows (zero-padded): convolution kernels
# are picked per batch shape and round differently (~1e-6), so a fixed shape is
# what keeps a sample's bytes independent of the requests that share its batch.
# Image-to-image models work at their training size.
WORKING_SIZE = 64


@dataclass(frozen=True)
class TextJob:
    model: str
    word_ids: tuple[int, ...]
    noise: torch.Tensor  # [n, noise_dim], CPU


@dataclass(frozen=True)
class ImageJob:
    model: str
    image: Image.Image  # RGB, any size


class GenerationServicer(generation_pb2_grpc.GenerationServicer):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = select_device(settings.device)
        self.text_models: dict[str, Text2Image] = {}
        self.image_models: dict[str, object] = {}
        self.chunk = GenerationSettings.from_env().chunk
        if self.device.type == "cuda":
            # Same reason as the fixed chunk: no run-to-run algorithm choice.
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        self._embeddings: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}
        self.batcher = DynamicBatcher(
            self._forward, max_batch_size=settings.max_batch_size, max_wait_ms=settings.max_batch_wait_ms,
            name="generation",
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def warm_up(self) -> None:
        await asyncio.to_thread(self._load_models)
        # Exercise every model once so the first real call pays no lazy initialisation.
        jobs: list[TextJob | ImageJob] = []
        for name, model in self.text_models.items():
            ids = tuple(model.tokenizer.encode("a large red circle")[0])
            jobs.append(TextJob(name, ids, torch.zeros(1, model.config.noise_dim)))
        for name in self.image_models:
            jobs.append(ImageJob(name, Image.new("RGB", (WORKING_SIZE, WORKING_SIZE))))
        if jobs:
            await self.batcher.run_now(jobs)
        log.info("generation models on %s: %s", describe_device(self.device),
                 ", ".join([*self.text_models, *self.image_models]) or "none")

    def _load_models(self) -> None:
        directory = self.settings.checkpoint_dir
        if TEXT2IMAGE in read_manifest(directory):
            self.text_models[TEXT2IMAGE] = load_text2image(self.device, directory)
        else:
            log.warning("no %s checkpoint in %s; TextToImage will answer NOT_FOUND", TEXT2IMAGE, directory)
        # Models not shipped are simply not served (NOT_FOUND); a shipped checkpoint that fails
        # to load is a broken install, and its CheckpointError stops the service.
        for name in available_image_to_image_models(directory):
            self.image_models[name] = load_image_to_image(name, self.device, directory)

    async def close(self) -> None:
        await self.batcher.close()

    # --- RPCs ------------------------------------------------------------------------------

    async def TextToImage(self, request, context):
        name = request.model or TEXT2IMAGE
        model = self._text_model(name)
        prompt = request.prompt
        if not prompt.strip():
            raise invalid_argument("prompt", "is empty; describe the picture, for example 'a large red circle'")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise invalid_argument("prompt", f"is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS}")
        if not 1 <= request.image_count <= MAX_IMAGES:
            raise invalid_argument("image_count", f"must be between 1 and {MAX_IMAGES}; got {request.image_count}")
        ids, unknown = model.tokenizer.encode(prompt)
        if not ids:
            raise invalid_argument(
                "prompt", f"none of its words is in the model's vocabulary ({', '.join(model.tokenizer.words[2:])})"
            )
        seed = request.seed or secrets.randbits(63) + 1
        pngs = await self.batcher.submit(TextJob(name, tuple(ids), _noise(seed, request.image_count,
                                                                          model.config.noise_dim)))
        return generation_pb2.TextToImageResponse(
            images=[common_pb2.Image(data=png) for png in pngs], seed=seed, unknown_words=unknown, model=name
        )

    async def ImageToImage(self, request, context):
        name = request.model
        if not name:
            raise invalid_argument("model", f"is required: one of {', '.join(IMAGE_TO_IMAGE)}")
        if name in self.text_models or name == TEXT2IMAGE:
            raise invalid_argument("model", f"'{name}' is a text-to-image model; call TextToImage")
        if name not in self.image_models:
            raise not_found("model", f"no image-to-image model '{name}' on this server; loaded: "
                                     f"{', '.join(self.image_models) or 'none'}")
        image = await in_thread("decoding the image", decode_image, request.image.data, "image.data",
                                self.settings)
        png = await self.batcher.submit(ImageJob(name, image))
        return generation_pb2.ImageToImageResponse(image=common_pb2.Image(data=png), model=name)

    async def ListModels(self, request, context):
        infos = [self._info(name, "text-to-image", model, model.manifest_entry, is_default=True)
                 for name, model in self.text_models.items()]
        infos += [self._info(name, name, model, model.manifest_entry, is_default=False)
                  for name, model in self.image_models.items()]
        return generation_pb2.ListGenerationModelsResponse(models=infos)

    # --- helpers ---------------------------------------------------------------------------

    def _text_model(self, name: str) -> Text2Image:
        if name in self.text_models:
            return self.text_models[name]
        if name in self.image_models or name in IMAGE_TO_IMAGE:
            raise invalid_argument("model", f"'{name}' is an image-to-image model; call ImageToImage")
        raise not_found("model", f"no text-to-image model '{name}' on this server; loaded: "
                                 f"{', '.join(self.text_models) or 'none'}")

    def _info(self, name: str, task: str, model, entry: dict, is_default: bool) -> common_pb2.ModelInfo:
        count = entry.get("parameter_count")
        if count is None and isinstance(model, torch.nn.Module):
            count = parameter_count(model)
        return model_info(name, task=task, backend=common_pb2.MODEL_BACKEND_BUILTIN, sha256=entry.get("sha256", ""),
                          device=self.device, is_default=is_default, parameter_count=count,
                          metrics=entry.get("metrics"))

    def _embedding(self, name: str, model: Text2Image, word_ids: tuple[int, ...]) -> torch.Tensor:
        # One prompt at a time (a GRU's output must not depend on its batch-mates), cached:
        # the vocabulary is closed, so real traffic repeats a small set of prompts.
        key = (name, word_ids)
        if key not in self._embeddings:
            if len(self._embeddings) >= 4096:
                self._embeddings.clear()
            ids, lengths = model.tokenizer.batch([list(word_ids)])
            self._embeddings[key] = model.text_encoder(ids.to(self.device), lengths)
        return self._embeddings[key]

    # --- the batch function (worker thread, inference mode) --------------------------------

    def _forward(self, jobs: list[TextJob | ImageJob]) -> list:
        results: list = [None] * len(jobs)
        for name in {j.model for j in jobs}:
            indices = [i for i, j in enumerate(jobs) if j.model == name]
            group = [jobs[i] for i in indices]
            outputs = (self._generate(self.text_models[name], group) if isinstance(group[0], TextJob)
                       else self._translate(self.image_models[name], group))
            for i, out in zip(indices, outputs):
                results[i] = out
        return results

    def _generate(self, model: Text2Image, jobs: list[TextJob]) -> list[list[bytes]]:
        embeddings = [self._embedding(job.model, model, job.word_ids) for job in jobs]
        text = torch.cat([e.expand(len(job.noise), -1) for e, job in zip(embeddings, jobs)])
        noise = torch.cat([job.noise for job in jobs]).to(self.device)
        parts = []
        for start in range(0, len(noise), self.chunk):
            rows = slice(start, start + self.chunk)
            parts.append(model(*_padded((noise[rows], text[rows]), self.chunk))[:len(noise[rows])])
        pixels = _to_uint8(torch.cat(parts))
        out, start = [], 0
        for job in jobs:
            out.append([encode_png(p) for p in pixels[start:start + len(job.noise)]])
            start += len(job.noise)
        return out

    def _translate(self, model, jobs: list[ImageJob]) -> list[bytes]:
        batch = torch.stack([
            torch.from_numpy(np.asarray(job.image.resize((WORKING_SIZE, WORKING_SIZE), Image.BICUBIC), np.float32))
            .permute(2, 0, 1) / 255.0
            for job in jobs
        ]).to(self.device)
        pixels = _to_uint8(model.translate(batch))
        pngs = []
        for job, p in zip(jobs, pixels):
            image = Image.fromarray(p)
            if image.size != job.image.size:
                image = image.resize(job.image.size, Image.BICUBIC)
            pngs.append(encode_png(np.asarray(image)))
        return pngs


def _noise(seed: int, count: int, dim: int) -> torch.Tensor:
    """Gaussian noise on the CPU, one row after the other, so image i of a
    request does not depend on how many images it asked for."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.cat([torch.randn(1, dim, generator=generator) for _ in range(count)])


def _padded(parts: tuple[torch.Tensor, ...], rows: int) -> list[torch.Tensor]:
    """Zero-pad each tensor to `rows` rows."""
    return [torch.cat([p, p.new_zeros(rows - len(p), *p.shape[1:])]) if len(p) < rows else p for p in parts]


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [0, 1] -> uint8 [N, H, W, 3]."""
    return (images.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
