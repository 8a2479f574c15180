"""The PostgreSQL store under a database crash: SIGKILL the server during four concurrent writers,
restart it, and count acknowledged ids that are missing (must be 0). While the database is down
the embedding service answers UNAVAILABLE and reports NOT_SERVING; it recovers by itself."""

from __future__ import annotations

import threading
import time

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.v1 import embedding_pb2
from tests.embedding.conftest import everything, image_item, store_env, stub_for, text_item, wait_for
from tests.postgres import PostgresServer, find_bindir
from tests.servers import health_status

E = embedding_pb2
SCENES = [render_scene(seed) for seed in EVAL_SEEDS[44000:44012]]
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def database():
    server = PostgresServer(find_bindir()).init().start()
    yield server
    server.cleanup()


def test_sigkill_of_the_database_loses_no_acknowledged_write_and_the_service_recovers(service_process, database):
    service = service_process("embedding", env=store_env(database.url, index_kind="hnsw"))
    acked, errors = [], []
    stop, phase_two = threading.Event(), threading.Event()
    acked_after_restart = []

    def writer(w: int) -> None:
        channel, stub = stub_for(service.target)
        with channel:
            i = 0
            while not stop.is_set():
                ids = [f"w{w}-{i}-{k}" for k in range(3)]
                items = [text_item(ids[0], SCENES[i % 12].captions[0], writer=str(w)),
                         image_item(ids[1], SCENES[(i + 1) % 12].image, writer=str(w)),
                         text_item(ids[2], SCENES[(i + 2) % 12].captions[-1], writer=str(w))]
                try:
                    stub.Upsert(E.UpsertRequest(collection="crash", items=items), timeout=30)
                except grpc.RpcError as exc:
                    errors.append(exc.code())
                    time.sleep(0.05)
                else:
                    acked.extend(ids)
                    if phase_two.is_set():
                        acked_after_restart.extend(ids)
                i += 1

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: len(acked) >= 120, 120), "not 120 acknowledged ids"
        database.kill()  # SIGKILL the postmaster and its backends, mid-write
        assert wait_for(lambda: len(errors) >= 8, 60), "not refusing writes"
        assert wait_for(lambda: health_status(service.target) != SERVING, 30), "not NOT_SERVING"
        channel, stub = stub_for(service.target)
        with channel, pytest.raises(grpc.RpcError) as caught:
            stub.Search(E.SearchRequest(collection="crash", text="a red circle", top_k=3), timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "SYN_EMBEDDING_STORE" in caught.value.details() and "password" not in caught.value.details()

        database.start()  # same data directory and port: crash recovery, then the service reconnects
        phase_two.set()
        assert wait_for(lambda: health_status(service.target) == SERVING, 60), "not SERVING again"
        assert wait_for(lambda: len(acked_after_restart) >= 30, 120), "not writing again"
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    # Every refusal was UNAVAILABLE (retryable), never INTERNAL or UNKNOWN.
    assert errors and set(errors) == {grpc.StatusCode.UNAVAILABLE}, set(errors)

    channel, stub = stub_for(service.target)
    with channel:
        present = everything(stub, "crash")
        missing = set(acked) - present.keys()
        assert not missing, f"{len(missing)} acknowledged ids missing: {sorted(missing)[:5]}"
        assert all(meta["writer"] == id_.split("-")[0][1:] for id_, meta in present.items())
        size = stub.GetCollection(E.GetCollectionRequest(collection="crash"), timeout=30).size
        assert size == len(present)
    # The count the catalogue keeps agrees with the table itself.
    with psycopg.connect(database.url) as conn:
        table = conn.execute("SELECT table_name FROM syn_collections WHERE name = 'crash'").fetchone()[0]
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == size


def test_collections_of_other_weights_or_dimensions_are_refused(service_process, postgres_url):
    """The catalogue's model fingerprint and dimension are checked as the FAISS store's are."""
    from models.training import read_manifest
    from services.embedding.postgres_store import PostgresStore
    from tests.runtime.helpers import field_violations

    fingerprint = read_manifest()["embedding"]["sha256"]
    with PostgresStore(postgres_url) as store:
        store.create("other-weights", "embedding", "0" * 64, 128)
        store.create("other-dimension", "embedding", fingerprint, 64)
        store.create("fine", "embedding", fingerprint, 128)
    service = service_process("embedding", env=store_env(postgres_url))
    channel, stub = stub_for(service.target)
    with channel:
        for name in ("other-weights", "other-dimension"):
            for call, request in ((stub.Search, E.SearchRequest(collection=name, text="a red circle", top_k=1)),
                                  (stub.Upsert, E.UpsertRequest(collection=name, items=[text_item("x", "a")]))):
                with pytest.raises(grpc.RpcError) as caught:
                    call(request, timeout=30)
                assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, caught.value.details()
                assert "collection" in [f for f, _ in field_violations(caught.value)]
        assert stub.Upsert(E.UpsertRequest(collection="fine", items=[text_item("x", "a red circle")]),
                           timeout=30).collection_size == 1
