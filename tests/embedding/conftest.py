"""Helpers and one shared Embedding service (built-in checkpoint, its own index directory) for this folder."""

from __future__ import annotations

import io
import itertools

import grpc
import numpy as np
import pytest
from PIL import Image

from synesthesia.tensors import from_tensor
from synesthesia.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
_names = itertools.count()


def png(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def image(pixels) -> common_pb2.Image:
    return common_pb2.Image(data=png(pixels))


def text_item(id_: str, text: str, **metadata: str) -> embedding_pb2.Item:
    return embedding_pb2.Item(id=id_, text=text, metadata=metadata)


def image_item(id_: str, pixels, **metadata: str) -> embedding_pb2.Item:
    return embedding_pb2.Item(id=id_, image=image(pixels), metadata=metadata)


def fresh_name(prefix: str = "c") -> str:
    """A collection name no other test in this session uses."""
    return f"{prefix}-{next(_names)}"


def everything(stub, collection: str) -> dict[str, dict[str, str]]:
    """id -> metadata of every item in a collection (a search with the largest top_k)."""
    hits = stub.Search(embedding_pb2.SearchRequest(collection=collection, text="a red circle", top_k=10_000),
                       timeout=60).hits
    return {h.id: dict(h.metadata) for h in hits}


def embed_texts(stub, texts, model: str = "") -> np.ndarray:
    return from_tensor(stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=texts, model=model),
                                       timeout=60).embeddings)


def stub_for(target: str):
    channel = grpc.insecure_channel(target, options=OPTIONS)
    return channel, embedding_pb2_grpc.EmbeddingStub(channel)


@pytest.fixture(scope="session")
def embedding_target(shared_service, tmp_path_factory) -> str:
    index = tmp_path_factory.mktemp("embedding-index")
    return shared_service("embedding", {"SYN_EMBEDDING_INDEX_DIR": str(index)}).target


@pytest.fixture(scope="session")
def embedding_stub(embedding_target):
    channel, stub = stub_for(embedding_target)
    with channel:
        yield stub
