"""The collection store on its own: the write-ahead log, snapshots, replay, torn records, both index kinds."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from services.embedding.collections import (
    CollectionError,
    CollectionStore,
    DimensionMismatch,
    encode_record,
    read_records,
)

DIM = 16


def unit_vectors(count: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def open_store(root, kind="flat-ip", **options):
    return CollectionStore(root, kind, **options)


def contents(collection) -> dict[str, np.ndarray]:
    ids = collection.ids()
    return dict(zip(ids, collection.vectors(ids)))


@pytest.mark.parametrize("kind", ["flat-ip", "hnsw"])
def test_search_replace_delete(tmp_path, kind):
    store = open_store(tmp_path, kind)
    c = store.get_or_create("things", "m", "fp", DIM)
    v = unit_vectors(50)
    assert c.upsert([f"id{i}" for i in range(50)], v, [{"n": str(i)} for i in range(50)]) == (50, 50)
    top = c.search(v[7], 3)
    assert top[0].id == "id7" and top[0].score == pytest.approx(1.0, abs=1e-5) and top[0].metadata == {"n": "7"}
    assert [h.score for h in top] == sorted((h.score for h in top), reverse=True)
    # Replacing keeps the size, moves the vector, and the old vector is no longer found.
    assert c.upsert(["id7"], v[8:9], [{"n": "new"}]) == (1, 50)
    hits = c.search(v[7], 50)
    assert all(h.score < 0.999 for h in hits) and len(hits) == 50
    assert {h.id for h in c.search(v[8], 2)} == {"id7", "id8"}
    assert c.delete(["id8", "missing", "id8"]) == (1, 49)
    assert "id8" not in {h.id for h in c.search(v[8], 50)}
    # top_k beyond the size gives every item once.
    assert sorted(h.id for h in c.search(v[0], 10_000)) == sorted(set(f"id{i}" for i in range(50)) - {"id8"})


def test_refuses_wrong_dimension_duplicate_ids_and_bad_names(tmp_path):
    store = open_store(tmp_path)
    c = store.get_or_create("a", "m", "fp", DIM)
    with pytest.raises(DimensionMismatch):
        c.upsert(["x"], np.ones((1, DIM + 1), np.float32))
    with pytest.raises(DimensionMismatch):
        c.search(np.ones(DIM + 1, np.float32), 1)
    with pytest.raises(CollectionError):
        c.upsert(["x", "x"], unit_vectors(2))
    with pytest.raises(CollectionError):
        c.upsert(["x"], np.full((1, DIM), np.nan, np.float32))
    for name in ["", "a/b", "..", "x" * 65, "sp ace", "é"]:
        with pytest.raises(CollectionError):
            store.get_or_create(name, "m", "fp", DIM)
    assert c.size == 0 and store.names() == ["a"]


@pytest.mark.parametrize("kind", ["flat-ip", "hnsw"])
@pytest.mark.parametrize("snapshot_every", [0, 3])
def test_reopening_without_close_replays_the_log(tmp_path, kind, snapshot_every):
    """No close() = a crash: the snapshot (if any) plus the log's records give back every write."""
    store = open_store(tmp_path, kind, snapshot_every=snapshot_every)
    c = store.get_or_create("a", "model-x", "fp1", DIM)
    v = unit_vectors(20)
    for i in range(20):
        c.upsert([f"id{i}"], v[i:i + 1], [{"i": str(i)}])
    c.upsert(["id3"], v[4:5], [{"i": "replaced"}])
    c.delete(["id5", "id6"])
    expected = contents(c)
    reopened = open_store(tmp_path, kind).get("a")
    assert reopened.info == c.info
    got = contents(reopened)
    assert got.keys() == expected.keys() and len(got) == 18
    for key in got:
        np.testing.assert_array_equal(got[key], expected[key])
    assert reopened.search(v[4], 1)[0].metadata in ({"i": "replaced"}, {"i": "4"})
    if snapshot_every:
        assert (tmp_path / "a" / "snapshot.json").exists()
        assert reopened.pending_records < snapshot_every


def test_snapshot_commits_then_truncates_and_a_stale_log_is_not_applied_twice(tmp_path):
    store = open_store(tmp_path, snapshot_every=0)
    c = store.get_or_create("a", "m", "fp", DIM)
    v = unit_vectors(6)
    c.upsert(["a", "b", "c"], v[:3])
    log_before = (tmp_path / "a" / "wal.log").read_bytes()
    assert c.snapshot() and (tmp_path / "a" / "wal.log").stat().st_size == 0
    assert not c.snapshot()  # nothing new to write
    c.delete(["b"])
    c.upsert(["d"], v[3:4])
    # A crash between the snapshot's commit and the log's truncation leaves old records in front:
    # they are at or below the snapshot's LSN and must be skipped on replay.
    wal = tmp_path / "a" / "wal.log"
    wal.write_bytes(log_before + wal.read_bytes())
    reopened = open_store(tmp_path).get("a")
    assert sorted(reopened.ids()) == ["a", "c", "d"]
    assert len(list((tmp_path / "a").glob("index-*.faiss"))) == 1


def test_a_torn_last_record_is_dropped_and_later_writes_survive(tmp_path):
    store = open_store(tmp_path, snapshot_every=0)
    c = store.get_or_create("a", "m", "fp", DIM)
    v = unit_vectors(4)
    c.upsert(["a", "b"], v[:2])
    wal = tmp_path / "a" / "wal.log"
    whole = encode_record({"lsn": 99, "op": "delete", "ids": ["a"]})
    with open(wal, "ab") as fh:
        fh.write(whole[: len(whole) - 3])  # the crash cut the last record short
    reopened_store = open_store(tmp_path, snapshot_every=0)
    reopened = reopened_store.get("a")
    assert sorted(reopened.ids()) == ["a", "b"]
    # The torn tail was cut off, so a record written now is not hidden behind it.
    reopened.upsert(["c"], v[2:3])
    records, good = read_records(wal)
    assert good == wal.stat().st_size and [r["op"] for r in records] == ["upsert", "upsert"]
    assert sorted(open_store(tmp_path).get("a").ids()) == ["a", "b", "c"]


def test_a_record_with_a_bad_checksum_ends_the_replay(tmp_path):
    store = open_store(tmp_path, snapshot_every=0)
    c = store.get_or_create("a", "m", "fp", DIM)
    c.upsert(["a"], unit_vectors(1))
    wal = tmp_path / "a" / "wal.log"
    bad = bytearray(encode_record({"lsn": 2, "op": "delete", "ids": ["a"]}))
    bad[-2] ^= 0xFF
    with open(wal, "ab") as fh:
        fh.write(bytes(bad))
    assert open_store(tmp_path).get("a").ids() == ["a"]


def test_collections_are_independent_and_keep_their_own_settings(tmp_path):
    flat = open_store(tmp_path, "flat-ip")
    flat.get_or_create("one", "m1", "f1", DIM).upsert(["x"], unit_vectors(1))
    flat.close()
    hnsw = open_store(tmp_path, "hnsw")  # the kind applies to new collections only
    two = hnsw.get_or_create("two", "m2", "f2", 8)
    two.upsert(["y", "z"], np.eye(8, dtype=np.float32)[:2])
    assert hnsw.get("one").info.index_kind == "flat-ip" and two.info.index_kind == "hnsw"
    assert hnsw.get("one").ids() == ["x"] and sorted(two.ids()) == ["y", "z"]
    hnsw.close()
    again = open_store(tmp_path)
    assert again.names() == ["one", "two"]
    assert json.loads((tmp_path / "two" / "collection.json").read_text())["info"]["model"] == "m2"
    assert again.get("two").info.dimension == 8


def test_hnsw_tombstones_are_skipped_and_rebuilt_away(tmp_path):
    store = open_store(tmp_path, "hnsw", snapshot_every=0)
    c = store.get_or_create("h", "m", "fp", DIM)
    v = unit_vectors(200, seed=1)
    c.upsert([f"id{i}" for i in range(200)], v)
    c.delete([f"id{i}" for i in range(0, 200, 2)])  # half dead
    hits = c.search(v[2], 5)
    assert len(hits) == 5 and all(int(h.id[2:]) % 2 == 1 for h in hits)
    assert c.search(v[3], 1)[0].id == "id3"
    c.snapshot()  # more than a quarter dead: the graph is rebuilt without them
    reopened = open_store(tmp_path, "hnsw").get("h")
    assert reopened._index.ntotal == 100 and not reopened._dead
    assert reopened.search(v[3], 1)[0].id == "id3"
    assert len(reopened.search(v[3], 10_000)) == 100


def test_concurrent_writers_lose_nothing(tmp_path):
    store = open_store(tmp_path, snapshot_every=5)
    c = store.get_or_create("a", "m", "fp", DIM)
    v = unit_vectors(160)

    def writer(w: int) -> None:
        for i in range(20):
            k = w * 20 + i
            c.upsert([f"w{w}-{i}"], v[k:k + 1])
            c.search(v[k], 3)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.size == 160
    assert len(open_store(tmp_path).get("a").ids()) == 160
