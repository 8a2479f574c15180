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


# --- collection stores: every backend, for tests parametrised over them ---------------------

BACKENDS = ("faiss", "postgres")


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL + pgvector server for the session (loopback, temporary data directory)."""
    from tests.postgres import PostgresServer, find_bindir

    bindir = find_bindir()
    assert bindir is not None, "no PostgreSQL with pgvector: install the dev extra (make install)"
    server = PostgresServer(bindir).init().start()
    yield server
    server.cleanup()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's server for this test."""
    import psycopg

    name = f"t{next(_names)}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path):
    """Where a test's collections live: a fresh FAISS directory or a fresh PostgreSQL database."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return str(tmp_path / "index")


@pytest.fixture
def open_store(store_url):
    """open_store(**options) -> a store on this test's location; every store opened is closed afterwards.
    Opening a second one on the same location without closing the first is a restart after a crash."""
    from services.embedding.store import open_store as open_any

    opened = []

    def open_(**options):
        store = open_any(store_url, **options)
        opened.append(store)
        return store

    yield open_
    from services.embedding.faiss_store import FaissStore

    for store in opened:
        # An earlier FAISS store on the same directory stands for a crashed process: closing it
        # now would snapshot its stale state over the newer one's. Connections are closed always.
        if store is opened[-1] or not isinstance(store, FaissStore):
            store.close()


def store_env(url: str, **env) -> dict[str, str]:
    """Service environment for a collection store URL (a directory or postgresql://...)."""
    return {"SYN_EMBEDDING_STORE": url, "SYN_EMBEDDING_STORE_TIMEOUT_S": "2",
            **{f"SYN_EMBEDDING_{k.upper()}": str(v) for k, v in env.items()}}


@pytest.fixture
def small_volume(tmp_path):
    """A 256 KiB tmpfs mounted for this test (CI runs as root), unmounted afterwards: a disk to fill."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "volume"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def wait_for(predicate, timeout_s: float) -> bool:
    """Poll `predicate` every 0.1 s until it holds (True) or `timeout_s` passes (False)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False
