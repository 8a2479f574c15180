"""Collections survive a restart and a SIGKILL: every acknowledged write is there afterwards.

Each test starts its own server on an index directory in tmp_path, writes, stops it
(SIGTERM) or kills it (SIGKILL), starts a new server on the same directory and
compares what it serves with what was acknowledged.
"""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.v1 import embedding_pb2
from tests.embedding.conftest import everything, image_item, stub_for, text_item

E = embedding_pb2
SCENES = [render_scene(seed) for seed in EVAL_SEEDS[42000:42012]]


def start(service_process, index_dir, **env):
    settings = {"SYN_EMBEDDING_INDEX_DIR": str(index_dir), **{f"SYN_EMBEDDING_{k.upper()}": str(v)
                                                             for k, v in env.items()}}
    return service_process("embedding", env=settings)


def snapshot_of(stub, collection: str) -> tuple[dict, list]:
    """Everything a client can see of a collection: items with metadata, and a search's ranking and scores."""
    hits = stub.Search(E.SearchRequest(collection=collection, text=SCENES[0].captions[0], top_k=100), timeout=60).hits
    return everything(stub, collection), [(h.id, round(h.score, 5)) for h in hits]


@pytest.mark.parametrize("kind", ["flat-ip", "hnsw"])
def test_collections_survive_a_restart(service_process, tmp_path, kind):
    server = start(service_process, tmp_path, index_kind=kind)
    channel, stub = stub_for(server.target)
    with channel:
        stub.Upsert(E.UpsertRequest(collection="photos", items=[
            image_item(f"scene-{s.seed}", s.image, caption=s.captions[0]) for s in SCENES]), timeout=60)
        stub.Upsert(E.UpsertRequest(collection="notes", items=[text_item("n1", "a red circle", lang="en"),
                                                               text_item("n2", "a blue square")]), timeout=60)
        # An upsert of an existing id replaces it: same size, new content and metadata.
        replaced = stub.Upsert(E.UpsertRequest(collection="photos", items=[
            image_item(f"scene-{SCENES[1].seed}", SCENES[0].image, caption="replaced")]), timeout=60)
        assert (replaced.upserted_count, replaced.collection_size) == (1, 12)
        deleted = stub.Delete(E.DeleteRequest(collection="photos", ids=[f"scene-{SCENES[2].seed}", "absent"]),
                              timeout=60)
        assert (deleted.deleted_count, deleted.collection_size) == (1, 11)
        before = snapshot_of(stub, "photos")
        assert before[0][f"scene-{SCENES[1].seed}"] == {"caption": "replaced"}
        assert f"scene-{SCENES[2].seed}" not in before[0]
        top = dict(before[1])
        # The replaced item now holds scene 0's image: both score the same against any query.
        assert top[f"scene-{SCENES[1].seed}"] == pytest.approx(top[f"scene-{SCENES[0].seed}"], abs=1e-5)
    assert server.stop() == 0

    again = start(service_process, tmp_path, index_kind="flat-ip" if kind == "hnsw" else "hnsw")
    channel, stub = stub_for(again.target)
    with channel:
        assert snapshot_of(stub, "photos") == before
        assert everything(stub, "notes") == {"n1": {"lang": "en"}, "n2": {}}
        described = stub.GetCollection(E.GetCollectionRequest(collection="photos"), timeout=30)
        # The kind is the collection's own, whatever the new server's default is.
        assert (described.size, described.dimension, described.model, described.index_kind) == (
            11, 128, "embedding", kind)
    # The clean stop left a snapshot and an empty log.
    assert (tmp_path / "photos" / "snapshot.json").exists()
    assert (tmp_path / "photos" / "wal.log").stat().st_size == 0


def _writers(target: str, acked: list, attempted: list, stop: threading.Event, workers: int = 4) -> list:
    def run(w: int) -> None:
        channel, stub = stub_for(target)
        with channel:
            i = 0
            while not stop.is_set():
                ids = [f"w{w}-{i}-{k}" for k in range(3)]
                attempted.extend(ids)
                items = [text_item(ids[0], SCENES[i % 12].captions[0], writer=str(w)),
                         image_item(ids[1], SCENES[(i + 1) % 12].image, writer=str(w)),
                         text_item(ids[2], SCENES[(i + 2) % 12].captions[-1], writer=str(w))]
                try:
                    stub.Upsert(E.UpsertRequest(collection="crash", items=items), timeout=30)
                except grpc.RpcError:
                    return  # the server is gone
                acked.extend(ids)
                i += 1

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in range(workers)]
    for t in threads:
        t.start()
    return threads


def test_sigkill_loses_no_acknowledged_upsert_even_with_a_torn_log(service_process, tmp_path):
    # Snapshots every 5 log records, so the kill finds a snapshot plus a log to replay.
    server = start(service_process, tmp_path, snapshot_every=5, snapshot_interval_s=0)
    acked, attempted, stop = [], [], threading.Event()
    threads = _writers(server.target, acked, attempted, stop)
    deadline = time.monotonic() + 60
    while len(acked) < 90 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # SIGKILL while writers are mid-call
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) >= 90
    acknowledged = set(acked)

    # A crash can also cut the log's last record short: simulate one on top of the kill.
    wal = tmp_path / "crash" / "wal.log"
    with open(wal, "ab") as fh:
        fh.write(b"SYNW\x00\x10\x00\x00\x12\x34\x56\x78{\"lsn\":")

    again = start(service_process, tmp_path, snapshot_every=5, snapshot_interval_s=0)
    channel, stub = stub_for(again.target)
    with channel:
        present = everything(stub, "crash")
        assert acknowledged <= present.keys()
        assert present.keys() <= set(attempted)  # nothing invented; in-flight writes may or may not be there
        assert all(meta["writer"] == ids.split("-")[0][1:] for ids, meta in present.items())
        # Writes after the recovery go on the log after the last whole record, and survive another kill.
        stub.Upsert(E.UpsertRequest(collection="crash", items=[text_item("after", "a green cross")]), timeout=30)
        expected = set(present) | {"after"}
    again.kill()
    third = start(service_process, tmp_path)
    channel, stub = stub_for(third.target)
    with channel:
        assert set(everything(stub, "crash")) == expected
        assert stub.Search(E.SearchRequest(collection="crash", text="a green cross", top_k=1),
                           timeout=30).hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_concurrent_upserts_and_searches_lose_nothing(embedding_stub):
    errors, done = [], []

    def worker(w: int) -> None:
        try:
            for i in range(8):
                ids = [f"c{w}-{i}-{k}" for k in range(4)]
                embedding_stub.Upsert(E.UpsertRequest(collection="concurrent", items=[
                    text_item(ids[0], SCENES[i].captions[0]), text_item(ids[1], SCENES[i + 1].captions[0]),
                    image_item(ids[2], SCENES[i + 2].image), image_item(ids[3], SCENES[i + 3].image)]), timeout=60)
                hits = embedding_stub.Search(E.SearchRequest(collection="concurrent", text=SCENES[i].captions[0],
                                                             top_k=5), timeout=60).hits
                assert hits and hits[0].score > 0.99  # at least this writer's own copy of that caption
                done.extend(ids)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert set(everything(embedding_stub, "concurrent")) == set(done) and len(done) == 256
    assert embedding_stub.GetCollection(E.GetCollectionRequest(collection="concurrent"), timeout=30).size == 256
    vectors = np.array([h.score for h in embedding_stub.Search(E.SearchRequest(
        collection="concurrent", image=image_item("q", SCENES[2].image).image, top_k=8), timeout=30).hits])
    assert (vectors[:8] > 0.99).all()  # the 8 writers' copies of scene 2's image come first
