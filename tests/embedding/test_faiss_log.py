"""The FAISS store's own durability: its write-ahead log, snapshots, replay, torn records, a full volume.

Everything here goes through the store's public methods and its files on disk (the
documented format), never its private fields."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import faiss
import pytest

from services.embedding.faiss_store import FaissStore, LogCorrupted, encode_record, read_records
from services.embedding.store import StoreFull
from tests.embedding.test_collections import DIM, unit_vectors


def ids_of(store, name="a") -> list[str]:
    return sorted(item.id for batch in store.items(name) for item in batch)


def test_snapshot_commits_then_truncates_and_a_stale_log_is_not_applied_twice(tmp_path):
    store = FaissStore(tmp_path, snapshot_every=0)
    store.create("a", "m", "fp", DIM)
    v = unit_vectors(6)
    store.upsert("a", ["a", "b", "c"], v[:3])
    wal = tmp_path / "a" / "wal.log"
    log_before = wal.read_bytes()
    assert store.snapshot_all() == 1 and wal.stat().st_size == 0
    assert store.snapshot_all() == 0  # nothing new to write
    store.delete("a", ["b"])
    store.upsert("a", ["d"], v[3:4])
    # A crash between the snapshot's commit and the log's truncation leaves old records in front:
    # they are at or below the snapshot's LSN and must be skipped on replay.
    wal.write_bytes(log_before + wal.read_bytes())
    assert ids_of(FaissStore(tmp_path)) == ["a", "c", "d"]
    assert len(list((tmp_path / "a").glob("index-*.faiss"))) == 1


def test_a_torn_last_record_is_dropped_and_later_writes_survive(tmp_path):
    store = FaissStore(tmp_path, snapshot_every=0)
    store.create("a", "m", "fp", DIM)
    v = unit_vectors(4)
    store.upsert("a", ["a", "b"], v[:2])
    wal = tmp_path / "a" / "wal.log"
    whole = encode_record({"lsn": 2, "op": "delete", "ids": ["a"]})
    with open(wal, "ab") as fh:
        fh.write(whole[: len(whole) - 3])  # the crash cut the last record short
    reopened = FaissStore(tmp_path, snapshot_every=0)
    assert ids_of(reopened) == ["a", "b"]
    # The torn tail was cut off, so a record written now is not hidden behind it.
    reopened.upsert("a", ["c"], v[2:3])
    records, good = read_records(wal)
    assert good == wal.stat().st_size and [(r["lsn"], r["op"]) for r in records] == [(1, "upsert"), (2, "upsert")]
    assert ids_of(FaissStore(tmp_path)) == ["a", "b", "c"]


def test_a_record_with_a_bad_checksum_ends_the_replay(tmp_path):
    store = FaissStore(tmp_path, snapshot_every=0)
    store.create("a", "m", "fp", DIM)
    store.upsert("a", ["a"], unit_vectors(1))
    bad = bytearray(encode_record({"lsn": 2, "op": "delete", "ids": ["a"]}))
    bad[-2] ^= 0xFF
    with open(tmp_path / "a" / "wal.log", "ab") as fh:
        fh.write(bytes(bad))
    assert ids_of(FaissStore(tmp_path)) == ["a"]


@pytest.mark.parametrize("lsns", [[1, 2, 2], [1, 3], [2, 3]])
def test_replay_refuses_a_log_whose_sequence_numbers_repeat_or_skip(tmp_path, lsns):
    """A repeated LSN (a refused write and the next one logged under the same number) is refused
    loudly, never skipped: one of the two records would be silently lost or applied wrongly."""
    store = FaissStore(tmp_path, snapshot_every=0)
    store.create("a", "m", "fp", DIM)
    store.close()
    v = unit_vectors(len(lsns))
    records = [encode_record({"lsn": lsn, "op": "upsert", "items": [{"id": f"x{k}", "label": k}],
                              "vectors": base64.b64encode(v[k].astype("<f4").tobytes()).decode()})
               for k, lsn in enumerate(lsns)]
    (tmp_path / "a" / "wal.log").write_bytes(b"".join(records))
    with pytest.raises(LogCorrupted, match="sequence number"):
        FaissStore(tmp_path)


def test_stale_snapshot_temp_files_are_removed_at_start(tmp_path):
    store = FaissStore(tmp_path, snapshot_every=0)
    store.create("a", "m", "fp", DIM)
    store.upsert("a", ["x"], unit_vectors(1))
    store.close()
    # What a crash in the middle of a snapshot leaves behind (atomic_write's temp names).
    for stale in (tmp_path / "a" / ".index-7.faiss.abc123.tmp", tmp_path / "a" / ".snapshot.json.def456.tmp"):
        stale.write_bytes(b"partial")
    (tmp_path / ".creating-b-xyz").mkdir()
    reopened = FaissStore(tmp_path)
    assert ids_of(reopened) == ["x"]
    assert not list(tmp_path.glob("**/*.tmp")) and not (tmp_path / ".creating-b-xyz").exists()


def test_hnsw_tombstones_are_skipped_and_rebuilt_away(tmp_path):
    store = FaissStore(tmp_path, "hnsw", snapshot_every=0)
    store.create("h", "m", "fp", DIM)
    v = unit_vectors(200, seed=1)
    store.upsert("h", [f"id{i}" for i in range(200)], v)
    store.delete("h", [f"id{i}" for i in range(0, 200, 2)])  # half dead
    hits = store.search("h", v[2], 5)
    assert len(hits) == 5 and all(int(h.id[2:]) % 2 == 1 for h in hits)
    assert store.search("h", v[3], 1)[0].id == "id3"
    store.snapshot_all()  # more than a quarter dead: the graph is rebuilt without them
    (index_file,) = (tmp_path / "h").glob("index-*.faiss")
    assert faiss.read_index(str(index_file)).ntotal == 100
    reopened = FaissStore(tmp_path, "hnsw")
    assert reopened.search("h", v[3], 1)[0].id == "id3"
    assert len(reopened.search("h", v[3], 10_000)) == 100


def test_a_second_process_cannot_open_the_same_index(tmp_path):
    store = FaissStore(tmp_path)
    code = ("import sys; from services.embedding.faiss_store import FaissStore\n"
            "from services.embedding.store import StoreUnavailable\n"
            "try:\n    FaissStore(sys.argv[1])\nexcept StoreUnavailable as e:\n    print(e); sys.exit(3)\n")
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                           cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert other.returncode == 3 and "another process" in other.stdout
    store.close()


def test_a_full_volume_refuses_writes_cleanly_and_loses_no_acknowledged_one(small_volume):
    store = FaissStore(small_volume, snapshot_every=7)
    store.create("a", "m", "fp", DIM)
    v = unit_vectors(1000, seed=2)
    acked, refused = [], []
    for i in range(1000):
        ids = [f"x{i}"]
        try:
            store.upsert("a", ids, v[i:i + 1], [{"pad": "p" * 3000}])
        except StoreFull as exc:
            assert str(small_volume) in str(exc) and "SYN_EMBEDDING_STORE" in str(exc)
            refused.extend(ids)
            if len(refused) >= 5:
                break
        else:
            acked.extend(ids)
    assert acked and len(refused) == 5
    assert "no space left" in store.fault()
    # The log ends on a whole record: nothing of a refused write is in it.
    records, good = read_records(small_volume / "a" / "wal.log")
    assert good == (small_volume / "a" / "wal.log").stat().st_size
    lsns = [r["lsn"] for r in records]
    assert lsns == list(range(lsns[0], lsns[0] + len(lsns))) if lsns else True
    assert not {item["id"] for r in records for item in r.get("items", [])} & set(refused)
    # Searches still work on a full volume.
    assert store.search("a", v[0], 1)[0].id == acked[0]

    # "Crash" (no close), make room, restart: every acknowledged id is there, no refused one.
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_volume)], check=True)
    reopened = FaissStore(small_volume)
    assert reopened.fault() is None
    present = set(ids_of(reopened))
    assert set(acked) <= present and not present & set(refused)
    reopened.upsert("a", ["after"], v[999:1000])
    assert "after" in set(ids_of(FaissStore(small_volume)))


def test_health_recovers_once_the_volume_has_room_again(small_volume):
    store = FaissStore(small_volume, snapshot_every=0)
    store.create("a", "m", "fp", DIM)
    v = unit_vectors(1, seed=4)
    with pytest.raises(StoreFull):
        for i in range(1000):
            store.upsert("a", [f"x{i}"], v, [{"pad": "p" * 3000}])
    assert store.fault() is not None
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_volume)], check=True)
    assert store.fault() is None
    assert store.upsert("a", ["y"], v)[0] == 1
