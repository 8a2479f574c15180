"""Helpers for the explanation tests: PNG encoding, stubs on the shared service processes."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from PIL import Image

from synesthesia.v1 import audio_pb2_grpc, captioning_pb2_grpc, embedding_pb2_grpc

OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _stub(target: str, factory):
    channel = grpc.insecure_channel(target, options=OPTIONS)
    return channel, factory(channel)


@pytest.fixture(scope="session")
def captioning(shared_service):
    channel, stub = _stub(shared_service("captioning").target, captioning_pb2_grpc.CaptioningStub)
    yield stub
    channel.close()


@pytest.fixture(scope="session")
def embedding(shared_service, tmp_path_factory):
    index = tmp_path_factory.mktemp("explain-index")
    channel, stub = _stub(shared_service("embedding", {"SYN_EMBEDDING_INDEX_DIR": str(index)}).target,
                          embedding_pb2_grpc.EmbeddingStub)
    yield stub
    channel.close()


@pytest.fixture(scope="session")
def audio(shared_service):
    channel, stub = _stub(shared_service("audio").target, audio_pb2_grpc.AudioStub)
    yield stub
    channel.close()


def violations(error: grpc.RpcError) -> dict[str, str]:
    """field -> description from the status's google.rpc.BadRequest."""
    from grpc_status import rpc_status
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(error)
    out = {}
    for detail in status.details if status else []:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.update({v.field: v.description for v in bad.field_violations})
    return out
