"""One Captioning service process (built-in checkpoint) for the read-only tests of this folder, and helpers."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from PIL import Image

from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2

OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


def encode(pixels_or_image, fmt: str = "PNG", **save) -> bytes:
    image = pixels_or_image if isinstance(pixels_or_image, Image.Image) else Image.fromarray(
        np.asarray(pixels_or_image, dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def caption_request(data: bytes, beam_size: int = 0, max_length: int = 0, model: str = "",
                    attention: bool = False) -> captioning_pb2.CaptionRequest:
    return captioning_pb2.CaptionRequest(
        image=common_pb2.Image(data=data), include_attention=attention,
        options=captioning_pb2.CaptionOptions(beam_size=beam_size, max_length_words=max_length, model=model))


def stream_request(data: bytes, beam_size: int = 0, max_length: int = 0, model: str = "",
                   attention: bool = False) -> captioning_pb2.StreamCaptionRequest:
    unary = caption_request(data, beam_size, max_length, model, attention)
    return captioning_pb2.StreamCaptionRequest(image=unary.image, options=unary.options,
                                               include_attention=attention)


@pytest.fixture(scope="session")
def captioning_target(shared_service) -> str:
    return shared_service("captioning").target


@pytest.fixture(scope="session")
def captioning_stub(captioning_target):
    with grpc.insecure_channel(captioning_target, options=OPTIONS) as channel:
        yield captioning_pb2_grpc.CaptioningStub(channel)
