"""Generation: images per second through the service (TextToImage with 1 and 16 images per call,
ImageToImage for each shipped model on 64x64 scenes) against the same model called in-process.

The service draws each request's noise on the CPU and runs the generator on fixed chunks of rows
(SYN_GENERATION_CHUNK, see docs/generation.md), so equal seeds give equal bytes under any load;
PNG encoding of every image (about 0.5 ms for a 64x64 image at the runtime's zlib level 1, more
than generating it on one CPU thread) is part of the service's work and not of the in-process
column.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from models.training import CHECKPOINT_DIR
from synesthesia.v1 import common_pb2, generation_pb2, generation_pb2_grpc
from tests.benchmarks.harness import Scenario

PROMPTS = [f"a {size} {colour} {shape}" for size in ("small", "large")
           for colour in ("red", "orange", "yellow", "green", "blue", "purple")
           for shape in ("circle", "square", "triangle", "cross")]
IMAGE_TO_IMAGE = ("sketch2photo", "day2night", "night2day")


def _scene_pngs(model: str) -> list[bytes]:
    from models.shapesworld import render_scene

    pngs = []
    for seed in range(1_000_000, 1_000_032):
        scene = render_scene(seed, size=64)
        pixels = {"sketch2photo": scene.sketch, "day2night": scene.day_image, "night2day": scene.night_image}[model]
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


def _text_call(count: int):
    def make_call(channel):
        stub = generation_pb2_grpc.GenerationStub(channel)

        def call(i: int):
            return stub.TextToImage(generation_pb2.TextToImageRequest(
                prompt=PROMPTS[i % len(PROMPTS)], image_count=count, seed=i + 1), timeout=120)

        return call

    return make_call


def _text_in_process(images_per_item: int = 1):
    """In-process generation; the harness counts items_per_call images per batch item."""
    def build():
        from models.generation.text2image import load_text2image

        model = load_text2image("cpu")

        def run(batch: int):
            rows = batch * images_per_item
            texts = [PROMPTS[i % len(PROMPTS)] for i in range(rows)]
            return model.generate(texts, torch.randn(rows, model.config.noise_dim))

        return run

    return build


def _image_call(model: str):
    def make_call(channel):
        stub = generation_pb2_grpc.GenerationStub(channel)
        pngs = _scene_pngs(model)

        def call(i: int):
            return stub.ImageToImage(generation_pb2.ImageToImageRequest(
                image=common_pb2.Image(data=pngs[i % len(pngs)]), model=model), timeout=120)

        return call

    return make_call


def _image_in_process(model: str):
    def build():
        from models.generation.image_to_image import load_image_to_image

        translator = load_image_to_image(model, torch.device("cpu"))
        pngs = _scene_pngs(model)
        images = torch.stack([torch.from_numpy(np.asarray(Image.open(io.BytesIO(p)).convert("RGB"), np.float32))
                              .permute(2, 0, 1) / 255.0 for p in pngs])

        def run(batch: int):
            with torch.inference_mode():
                return translator.translate(images[torch.arange(batch) % len(images)])

        return run

    return build


SCENARIOS = [
    Scenario(name="generation.TextToImage (1 image/call)", module="services.generation", make_call=_text_call(1),
             unit="images", in_process=_text_in_process(1), min_calls=48, calls_per_worker=6),
    Scenario(name="generation.TextToImage (16 images/call)", module="services.generation",
             make_call=_text_call(16), items_per_call=16, unit="images", in_process=_text_in_process(16),
             batch_sizes=(1, 2, 4), min_calls=16, calls_per_worker=2),
]
SCENARIOS += [
    Scenario(name=f"generation.ImageToImage ({name})", module="services.generation", make_call=_image_call(name),
             unit="images", in_process=_image_in_process(name), min_calls=32, calls_per_worker=4)
    for name in IMAGE_TO_IMAGE if (CHECKPOINT_DIR / f"{name}.safetensors").exists()
]
