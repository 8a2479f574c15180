"""Embedding service: embeddings per second (images, texts) through the service against the built-in model
in-process, and Search latency at 10k and 100k vectors against raw FAISS on the same vectors.

Embeddings: one item per call (a held-out 64x64 ShapesWorld PNG, or its caption), so concurrency is
what fills the DynamicBatcher; in-process starts from decoded pixels / strings at the best batch size,
with the server's intra-op thread count (one unless SYN_BENCH_THREADS says otherwise).

Search: a collection of N random unit vectors (128-d, written with the service's own store before the
server starts, tagged with the shipped model) searched by text (top_k 10) through the service, sequentially
and at 8 concurrent callers; the raw FAISS column searches the same index type holding the same vectors
with the same query vector in this process. The service's time includes embedding the query, gRPC and
the id/metadata lookup; that difference is the service's cost.
"""

from __future__ import annotations

import concurrent.futures
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.pictures import png_bytes
from synesthesia.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc
from tests.benchmarks.harness import THREADS, Scenario, summarise, torch_threads
from tests.servers import ServiceProcess

SCENES = [render_scene(seed) for seed in EVAL_SEEDS[:32]]
SEARCH_SIZES = (10_000, 100_000)
SEARCH_CALLS = 200
DIM = 128


def _images_call(channel):
    stub = embedding_pb2_grpc.EmbeddingStub(channel)
    requests = [embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=png_bytes(s.image))]) for s in SCENES]
    return lambda i: stub.EmbedImages(requests[i % len(requests)], timeout=60)


def _texts_call(channel):
    stub = embedding_pb2_grpc.EmbeddingStub(channel)
    requests = [embedding_pb2.EmbedTextsRequest(texts=[s.captions[0]]) for s in SCENES]
    return lambda i: stub.EmbedTexts(requests[i % len(requests)], timeout=60)


def _model():
    from models.embedding.checkpoint import load_embedder

    return load_embedder().model


def _images_in_process():
    from models.images import images_to_batch

    model = _model()
    pixels = images_to_batch([s.image for s in SCENES], 64)

    def run(batch: int):
        with torch_threads(), torch.inference_mode():
            return model.encode_images(pixels[:batch])

    return run


def _texts_in_process():
    model = _model()
    captions = [s.captions[0] for s in SCENES]

    def run(batch: int):
        with torch_threads(), torch.inference_mode():
            return model.encode_texts(captions[:batch])

    return run


_INDEX_DIR = tempfile.mkdtemp(prefix="bench-embedding-index-")
SCENARIOS = [
    Scenario(name="embedding.EmbedImages (1 x 64x64 PNG)", module="services.embedding", make_call=_images_call,
             unit="images", env={"SYN_EMBEDDING_INDEX_DIR": _INDEX_DIR}, in_process=_images_in_process,
             min_calls=64, calls_per_worker=8),
    Scenario(name="embedding.EmbedTexts (1 caption)", module="services.embedding", make_call=_texts_call,
             unit="texts", env={"SYN_EMBEDDING_INDEX_DIR": _INDEX_DIR}, in_process=_texts_in_process,
             min_calls=64, calls_per_worker=8),
]


# --- search latency ---------------------------------------------------------------------------

def _vectors(count: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((count, DIM), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _build_index_dir(root: Path, kind: str, vectors: np.ndarray) -> None:
    from models.training import read_manifest
    from services.embedding.faiss_store import FaissStore

    store = FaissStore(root, kind, snapshot_every=0)
    store.create("bench", "embedding", read_manifest()["embedding"]["sha256"], DIM)
    for start in range(0, len(vectors), 10_000):
        chunk = vectors[start:start + 10_000]
        store.upsert("bench", [f"v{start + i}" for i in range(len(chunk))], chunk,
                     [{"n": str(start + i)} for i in range(len(chunk))])
    store.close()  # writes the snapshot the server loads


def _latencies(fn, calls: int, concurrency: int = 1) -> list[float]:
    def one(i: int) -> float:
        started = time.perf_counter()
        fn(i)
        return (time.perf_counter() - started) * 1000.0

    fn(0)
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(calls)))


def _raw_faiss(kind: str, vectors: np.ndarray, query: np.ndarray) -> list[float]:
    if kind == "hnsw":
        inner = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = 64
        inner.hnsw.efSearch = 64
    else:
        inner = faiss.IndexFlatIP(DIM)
    index = faiss.IndexIDMap2(inner)
    index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
    return _latencies(lambda i: index.search(query, 10), SEARCH_CALLS)


def search_rows() -> list[str]:
    from models.embedding.checkpoint import load_embedder

    faiss.omp_set_num_threads(THREADS)
    model = load_embedder().model
    captions = [s.captions[0] for s in SCENES]
    with torch.inference_mode():
        query = model.encode_texts(captions[:1]).numpy()
    rows = []
    for kind in ("flat-ip", "hnsw"):
        for size in SEARCH_SIZES:
            vectors = _vectors(size)
            root = Path(tempfile.mkdtemp(prefix=f"bench-search-{kind}-{size}-"))
            started = time.perf_counter()
            _build_index_dir(root, kind, vectors)
            build_s = time.perf_counter() - started
            server = ServiceProcess("services.embedding", {"SYN_EMBEDDING_INDEX_DIR": str(root),
                                                           "SYN_EMBEDDING_SNAPSHOT_INTERVAL_S": "0"}).start()
            try:
                import grpc

                with grpc.insecure_channel(server.target) as channel:
                    stub = embedding_pb2_grpc.EmbeddingStub(channel)
                    requests = [embedding_pb2.SearchRequest(collection="bench", text=c, top_k=10) for c in captions]

                    def search(i: int):
                        return stub.Search(requests[i % len(requests)], timeout=60)

                    sequential = _latencies(search, SEARCH_CALLS)
                    concurrent_ = _latencies(search, SEARCH_CALLS, concurrency=8)
            finally:
                server.stop()
            raw = _raw_faiss(kind, vectors, query)
            (s50, s99), (c50, c99), (r50, r99) = summarise(sequential), summarise(concurrent_), summarise(raw)
            rows.append(f"| {kind} | {size:,} | {s50:.2f} | {s99:.2f} | {c50:.2f} | {c99:.2f} | {r50:.3f} | "
                        f"{r99:.3f} | {build_s:.1f} |")
            print(f"  search {kind} {size}: service p50 {s50:.2f} ms, raw faiss p50 {r50:.3f} ms", flush=True)
    return rows


def extra_sections() -> list[str]:
    header = ("### Search latency (top_k 10, text query)\n\n"
              "| index | vectors | service p50 ms | service p99 ms | service p50 ms (8 callers) | "
              "service p99 ms (8 callers) | raw FAISS p50 ms | raw FAISS p99 ms | index build + snapshot s |\n"
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    return [header + "\n" + "\n".join(search_rows())]
