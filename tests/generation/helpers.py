"""Calls to a running Generation service, shared by the generation tests."""

from __future__ import annotations

import io

import grpc
import numpy as np
from PIL import Image

from synesthesia.v1 import common_pb2, generation_pb2, generation_pb2_grpc

SERVICE = "generation"


def stub(channel: grpc.Channel) -> generation_pb2_grpc.GenerationStub:
    return generation_pb2_grpc.GenerationStub(channel)


def text_to_image(target: str, prompt: str, image_count: int = 1, seed: int = 0, model: str = "",
                  timeout: float = 60.0) -> generation_pb2.TextToImageResponse:
    with grpc.insecure_channel(target) as channel:
        return stub(channel).TextToImage(
            generation_pb2.TextToImageRequest(prompt=prompt, image_count=image_count, seed=seed, model=model),
            timeout=timeout,
        )


def image_to_image(target: str, data: bytes, model: str, timeout: float = 60.0) -> generation_pb2.ImageToImageResponse:
    with grpc.insecure_channel(target) as channel:
        return stub(channel).ImageToImage(
            generation_pb2.ImageToImageRequest(image=common_pb2.Image(data=data), model=model), timeout=timeout
        )


def list_models(target: str) -> list[common_pb2.ModelInfo]:
    with grpc.insecure_channel(target) as channel:
        return list(stub(channel).ListModels(generation_pb2.ListGenerationModelsRequest(), timeout=30).models)


def decode_png(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
