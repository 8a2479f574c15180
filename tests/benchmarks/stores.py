"""Collection stores side by side: the embedded FAISS + log store and PostgreSQL + pgvector (a server this
run starts on loopback with a temporary data directory, fsync on), each with an exact (flat-ip) and an
HNSW collection (M 32, ef_search 64) of N random 128-d unit vectors, through the store interface the
service uses (no gRPC, no embedding model: the store's own cost).

Per row: upsert latency of a 16-item batch (new ids, acknowledged = durable: fsynced log / committed
transaction) at that size, search latency at top_k 10 (unfiltered, and with a metadata filter that keeps
one item in ten), recall@10 of the unfiltered search against exact inner-product search computed with
numpy, and the time to load the N vectors in 1,000-item batches. p50/p99 over SEARCHES queries and
UPSERTS upserts, one caller.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np


SIZES = tuple(int(n) for n in os.environ.get("SYN_BENCH_STORE_SIZES", "10000,100000").split(","))
# Subsets for a quick look (the default, both of each, is what `make bench` reports).
BACKENDS = tuple(os.environ.get("SYN_BENCH_STORE_BACKENDS", "faiss,postgresql").split(","))
KINDS = tuple(os.environ.get("SYN_BENCH_STORE_KINDS", "flat-ip,hnsw").split(","))
DIM = 128
SEARCHES = 200
UPSERTS = 100
UPSERT_BATCH = 16
LOAD_BATCH = 1000


def _vectors(count: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((count, DIM), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def _measure(store, name: str, vectors: np.ndarray, queries: np.ndarray, exact_top: np.ndarray) -> dict:
    start = time.perf_counter()
    for s in range(0, len(vectors), LOAD_BATCH):
        chunk = vectors[s:s + LOAD_BATCH]
        store.upsert(name, [f"v{s + i}" for i in range(len(chunk))], chunk,
                     [{"tenth": str((s + i) % 10)} for i in range(len(chunk))])
    load_s = time.perf_counter() - start

    search, filtered, recalls = [], [], []
    for q, query in enumerate(queries):
        t = time.perf_counter()
        hits = store.search(name, query, 10)
        search.append(time.perf_counter() - t)
        recalls.append(len({h.id for h in hits} & {f"v{i}" for i in exact_top[q]}) / 10)
        t = time.perf_counter()
        store.search(name, query, 10, {"tenth": str(q % 10)})
        filtered.append(time.perf_counter() - t)

    extra = _vectors(UPSERTS * UPSERT_BATCH, seed=7)
    upserts = []
    for u in range(UPSERTS):
        chunk = extra[u * UPSERT_BATCH:(u + 1) * UPSERT_BATCH]
        t = time.perf_counter()
        store.upsert(name, [f"new{u}-{i}" for i in range(len(chunk))], chunk)
        upserts.append(time.perf_counter() - t)
    return {"load_s": load_s, "upsert": upserts, "search": search, "filtered": filtered,
            "recall": float(np.mean(recalls))}


def _row(backend: str, kind: str, size: int, r: dict) -> str:
    return (f"| {backend} | {kind} | {size:,} | {_ms(r['upsert'], 50):.2f} / {_ms(r['upsert'], 99):.2f} "
            f"| {_ms(r['search'], 50):.2f} / {_ms(r['search'], 99):.2f} "
            f"| {_ms(r['filtered'], 50):.2f} / {_ms(r['filtered'], 99):.2f} | {r['recall']:.3f} "
            f"| {r['load_s']:.1f} |")


def extra_sections() -> list[str]:
    from services.embedding.faiss_store import FaissStore
    from services.embedding.postgres_store import PostgresStore
    from tests.postgres import PostgresServer, find_bindir

    rows = []
    # shared_buffers big enough for a 100k HNSW graph (~100 MB): PostgreSQL's own cache, not the OS's.
    server = PostgresServer(find_bindir()).init().start(shared_buffers="512MB")
    try:
        for size in SIZES:
            vectors = _vectors(size, seed=size)
            queries = _vectors(SEARCHES, seed=1)
            exact_top = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
            for backend in BACKENDS:
                for kind in KINDS:
                    name = f"bench-{kind}-{size}"
                    with tempfile.TemporaryDirectory(prefix="bench-stores-") as root:
                        store = (FaissStore(root, kind, snapshot_every=0) if backend == "faiss"
                                 else PostgresStore(server.url, kind, timeout_s=600))
                        try:
                            store.create(name, "bench", "bench", DIM)
                            result = _measure(store, name, vectors, queries, exact_top)
                            store.drop(name)
                        finally:
                            store.close()
                    rows.append(_row(backend, kind, size, result))
                    print(rows[-1], flush=True)
    finally:
        server.cleanup()
    header = ("| store | index | vectors | upsert of 16, p50 / p99 ms | search top 10, p50 / p99 ms "
              "| filtered (1 in 10), p50 / p99 ms | recall@10 | load s |\n"
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    return ["### Collection stores\n\n" + header + "\n" + "\n".join(rows)]
