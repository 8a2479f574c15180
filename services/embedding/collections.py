"""Named, persistent vector collections: the embedding service's state (FAISS + files; no torch here).

On disk, one directory per collection under the index root:

    <root>/<name>/collection.json    name, model, model fingerprint, dimension, index kind (written once)
    <root>/<name>/wal.log            write-ahead log: records appended and fsynced before a write is acked
    <root>/<name>/snapshot.json      the last snapshot: its log sequence number, the index file's name,
                                     and the item table (FAISS label -> id, metadata)
    <root>/<name>/index-<lsn>.faiss  the FAISS index of that snapshot

A write (upsert or delete) takes the collection's lock, gets the next log sequence
number (LSN), appends one record to the log, fsyncs it, applies it to the in-memory
index and only then returns, so an acknowledged write survives a crash. A log record
is ``b"SYNW" | length u32 | crc32 u32 | payload`` (JSON; vectors as base64 float32
LE): a record cut short by a crash (the last one) fails the length or CRC check and
is dropped on replay, and the log is truncated back to the last whole record.

A snapshot (every `snapshot_every` records, on `snapshot_all()` and on close) writes
the index with `faiss.write_index` to a temp file and `os.replace`s it to
``index-<lsn>.faiss``, then replaces snapshot.json the same way (the commit point;
directories are fsynced too), then empties the log. On start the snapshot is
loaded and log records with an LSN above the snapshot's are replayed, so a crash
between any two of those steps loses nothing and applies nothing twice.

Index kinds: ``flat-ip`` (exact inner product, `IndexFlatIP` in an `IndexIDMap2`;
replaced and deleted vectors are removed) and ``hnsw`` (`IndexHNSWFlat`, inner
product, in an `IndexIDMap2`; HNSW cannot remove vectors, so replaced and deleted
labels become tombstones that searches skip, and a snapshot rebuilds the graph
once they exceed a quarter of it). Scores are inner products, i.e. cosine
similarities for the L2-normalised vectors the service stores.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import shutil
import struct
import tempfile
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from models.files import atomic_write, atomic_write_with, fsync_dir

log = logging.getLogger(__name__)

INDEX_KINDS: tuple[str, ...] = ("flat-ip", "hnsw")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FORMAT = "synesthesia-collection/1"
_MAGIC = b"SYNW"
_HEADER = struct.Struct("<4sII")  # magic, payload length, crc32 of the payload
_MAX_RECORD_BYTES = 1 << 30
# HNSW: rebuild the graph at a snapshot once tombstones exceed this share of its vectors.
_REBUILD_DEAD_SHARE = 0.25


class CollectionError(Exception):
    """A request the store refuses; `field` says which part of it (for the caller's error message)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DimensionMismatch(CollectionError):
    pass


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    metadata: dict[str, str]


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    model: str
    fingerprint: str
    dimension: int
    index_kind: str


# --- small file helpers -------------------------------------------------------------------

def encode_record(payload: Mapping) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return _HEADER.pack(_MAGIC, len(body), zlib.crc32(body)) + body


def read_records(path: Path) -> tuple[list[dict], int]:
    """The whole records of a log and the byte offset just after the last of them."""
    records, good = [], 0
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    while good + _HEADER.size <= len(data):
        magic, length, crc = _HEADER.unpack_from(data, good)
        start, end = good + _HEADER.size, good + _HEADER.size + length
        if magic != _MAGIC or length > _MAX_RECORD_BYTES or end > len(data):
            break
        body = data[start:end]
        if zlib.crc32(body) != crc:
            break
        try:
            records.append(json.loads(body))
        except ValueError:
            break
        good = end
    if good != len(data):
        log.warning("%s: dropping %d bytes after the last whole record (a write cut short)", path, len(data) - good)
    return records, good


def _vectors_to_text(vectors: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).decode("ascii")


def _vectors_from_text(text: str, dimension: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").reshape(-1, dimension).astype(np.float32)


# --- one collection -----------------------------------------------------------------------

class Collection:
    """One named collection: an index plus its item table, its log and its snapshots. Thread-safe."""

    def __init__(self, directory: Path, info: CollectionInfo, snapshot_every: int, hnsw_m: int,
                 hnsw_ef_search: int) -> None:
        self.directory = directory
        self.info = info
        self.snapshot_every = snapshot_every
        self.hnsw_m = hnsw_m
        self.hnsw_ef_search = hnsw_ef_search
        self._lock = threading.Lock()
        self._items: dict[int, tuple[str, dict[str, str]]] = {}  # label -> (id, metadata)
        self._labels: dict[str, int] = {}  # id -> label
        self._dead: set[int] = set()  # hnsw tombstones: labels in the index that no longer count
        self._next_label = 0
        self._lsn = 0  # last applied log sequence number
        self._snapshot_lsn = 0
        self._log_records = 0  # records in the log since the last snapshot
        self._index = self._new_index()
        self._recover()
        self._log = open(self.directory / "wal.log", "ab")

    # properties ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.info.name

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def pending_records(self) -> int:
        return self._log_records

    # index ---------------------------------------------------------------------------------
    def _new_index(self) -> faiss.Index:
        if self.info.index_kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.info.dimension, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = max(40, 2 * self.hnsw_m)
        else:
            inner = faiss.IndexFlatIP(self.info.dimension)
        return faiss.IndexIDMap2(inner)

    def _remove_label(self, label: int) -> None:
        if self.info.index_kind == "hnsw":
            self._dead.add(label)
        else:
            self._index.remove_ids(np.array([label], dtype=np.int64))

    def _apply(self, record: dict) -> None:
        if record["op"] == "upsert":
            vectors = _vectors_from_text(record["vectors"], self.info.dimension)
            labels = np.array([item["label"] for item in record["items"]], dtype=np.int64)
            for item in record["items"]:
                old = self._labels.pop(item["id"], None)
                if old is not None:
                    self._items.pop(old, None)
                    self._remove_label(old)
                self._labels[item["id"]] = item["label"]
                self._items[item["label"]] = (item["id"], dict(item.get("metadata", {})))
            self._index.add_with_ids(vectors, labels)
            self._next_label = max(self._next_label, int(labels.max()) + 1)
        elif record["op"] == "delete":
            for id_ in record["ids"]:
                label = self._labels.pop(id_, None)
                if label is not None:
                    self._items.pop(label, None)
                    self._remove_label(label)
        else:
            raise ValueError(f"unknown log record op {record['op']!r}")
        self._lsn = int(record["lsn"])

    # recovery ------------------------------------------------------------------------------
    def _recover(self) -> None:
        snapshot = self.directory / "snapshot.json"
        if snapshot.exists():
            state = json.loads(snapshot.read_text(encoding="utf-8"))
            self._index = faiss.read_index(str(self.directory / state["index_file"]))
            self._lsn = self._snapshot_lsn = int(state["lsn"])
            self._next_label = int(state["next_label"])
            for label, id_, metadata in state["items"]:
                self._items[int(label)] = (id_, metadata)
                self._labels[id_] = int(label)
            if self.info.index_kind == "hnsw":
                present = faiss.vector_to_array(self._index.id_map)
                self._dead = set(int(x) for x in present) - set(self._items)
        wal = self.directory / "wal.log"
        records, good = read_records(wal)
        if wal.exists() and good != wal.stat().st_size:
            with open(wal, "r+b") as fh:  # new records must not follow a torn one
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())
        replayed = 0
        for record in records:
            if int(record["lsn"]) > self._lsn:
                self._apply(record)
                replayed += 1
        self._log_records = len(records)
        if replayed:
            log.info("collection %s: replayed %d log records (lsn %d)", self.name, replayed, self._lsn)

    # writes --------------------------------------------------------------------------------
    def _append(self, payload: dict) -> None:
        self._log.write(encode_record(payload))
        self._log.flush()
        os.fsync(self._log.fileno())
        self._log_records += 1

    def upsert(self, ids: Sequence[str], vectors: np.ndarray,
               metadata: Sequence[Mapping[str, str]] | None = None) -> tuple[int, int]:
        """Insert or replace items; durable when it returns. (items written, collection size)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.info.dimension:
            raise DimensionMismatch("vectors", f"collection {self.name!r} holds {self.info.dimension}-dimensional "
                                               f"vectors, got shape {tuple(vectors.shape)}")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if len(set(ids)) != len(ids):
            raise CollectionError("ids", "an id occurs twice in one upsert")
        if not np.isfinite(vectors).all():
            raise CollectionError("vectors", "vectors must be finite")
        metadata = list(metadata) if metadata is not None else [{}] * len(ids)
        with self._lock:
            items = [{"id": id_, "label": self._next_label + k, "metadata": dict(m)}
                     for k, (id_, m) in enumerate(zip(ids, metadata))]
            record = {"lsn": self._lsn + 1, "op": "upsert", "items": items, "vectors": _vectors_to_text(vectors)}
            self._append(record)
            self._apply(record)
            self._maybe_snapshot()
            return len(ids), len(self._items)

    def delete(self, ids: Iterable[str]) -> tuple[int, int]:
        """Remove items by id (absent ids are ignored); durable when it returns. (removed, collection size)."""
        with self._lock:
            present = [id_ for id_ in dict.fromkeys(ids) if id_ in self._labels]
            if present:
                record = {"lsn": self._lsn + 1, "op": "delete", "ids": present}
                self._append(record)
                self._apply(record)
                self._maybe_snapshot()
            return len(present), len(self._items)

    # reads ---------------------------------------------------------------------------------
    def search(self, query: np.ndarray, top_k: int) -> list[Hit]:
        query = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
        if query.shape[1] != self.info.dimension:
            raise DimensionMismatch("query", f"collection {self.name!r} holds {self.info.dimension}-dimensional "
                                             f"vectors, the query has {query.shape[1]}")
        with self._lock:
            if not self._items:
                return []
            want = min(top_k, len(self._items)) + len(self._dead)
            if self.info.index_kind == "hnsw":
                params = faiss.SearchParametersHNSW(efSearch=max(self.hnsw_ef_search, want))
                scores, labels = self._index.search(query, want, params=params)
            else:
                scores, labels = self._index.search(query, want)
            hits = []
            for score, label in zip(scores[0], labels[0]):
                entry = self._items.get(int(label)) if label >= 0 else None
                if entry is not None:
                    hits.append(Hit(entry[0], float(score), dict(entry[1])))
                    if len(hits) == top_k:
                        break
            return hits

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._labels)

    def vectors(self, ids: Sequence[str]) -> np.ndarray:
        """Stored vectors of `ids` (KeyError for an absent id)."""
        with self._lock:
            return np.stack([self._index.reconstruct(self._labels[i]) for i in ids]) if ids else \
                np.zeros((0, self.info.dimension), np.float32)

    # snapshots -----------------------------------------------------------------------------
    def _maybe_snapshot(self) -> None:
        if self.snapshot_every and self._log_records >= self.snapshot_every:
            self._snapshot()

    def snapshot(self) -> bool:
        """Write a snapshot if the log holds records; True when one was written."""
        with self._lock:
            if self._lsn == self._snapshot_lsn and not self._log_records:
                return False
            self._snapshot()
            return True

    def _rebuild_without_tombstones(self) -> None:
        if not self._dead:
            return
        inner = faiss.downcast_index(self._index.index)
        labels = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vectors = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.zeros((0, self.info.dimension), "f4")
        keep = np.array([int(label) not in self._dead for label in labels], dtype=bool)
        fresh = self._new_index()
        if keep.any():
            fresh.add_with_ids(np.ascontiguousarray(vectors[keep]), labels[keep])
        self._index, self._dead = fresh, set()

    def _snapshot(self) -> None:
        if self.info.index_kind == "hnsw" and len(self._dead) > _REBUILD_DEAD_SHARE * max(1, self._index.ntotal):
            self._rebuild_without_tombstones()
        index_name = f"index-{self._lsn}.faiss"
        atomic_write_with(self.directory / index_name, lambda tmp: faiss.write_index(self._index, tmp))
        state = {"format": FORMAT, "lsn": self._lsn, "index_file": index_name, "next_label": self._next_label,
                 "items": [[label, id_, metadata] for label, (id_, metadata) in self._items.items()]}
        atomic_write(self.directory / "snapshot.json", json.dumps(state, separators=(",", ":")).encode("utf-8"))
        self._snapshot_lsn = self._lsn
        # Committed: the log's records are all at or below the snapshot's LSN now.
        self._log.truncate(0)
        self._log.flush()
        os.fsync(self._log.fileno())
        self._log_records = 0
        for old in self.directory.glob("index-*.faiss"):
            if old.name != index_name:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()

    def close(self) -> None:
        with self._lock:
            if self._lsn != self._snapshot_lsn or self._log_records:
                self._snapshot()
            self._log.close()


# --- the store ----------------------------------------------------------------------------

class CollectionStore:
    """Every collection under `root`, loaded on start; new collections are created on first write."""

    def __init__(self, root: str | Path, index_kind: str = "flat-ip", snapshot_every: int = 1000,
                 hnsw_m: int = 32, hnsw_ef_search: int = 64) -> None:
        if index_kind not in INDEX_KINDS:
            raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {index_kind!r}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.index_kind = index_kind
        self._options = dict(snapshot_every=snapshot_every, hnsw_m=hnsw_m, hnsw_ef_search=hnsw_ef_search)
        self._lock = threading.Lock()
        self._collections: dict[str, Collection] = {}
        for directory in sorted(self.root.iterdir()):
            meta = directory / "collection.json"
            if directory.is_dir() and meta.exists() and NAME_PATTERN.match(directory.name):
                info = CollectionInfo(**json.loads(meta.read_text(encoding="utf-8"))["info"])
                self._collections[info.name] = Collection(directory, info, **self._options)
            elif directory.is_dir() and directory.name.startswith(".creating-"):
                shutil.rmtree(directory, ignore_errors=True)  # a creation cut short; never acknowledged

    @staticmethod
    def check_name(name: str) -> None:
        if not NAME_PATTERN.match(name or ""):
            raise CollectionError("collection", f"{name!r} is not a collection name: 1 to 64 letters, digits, "
                                                f"'-' or '_'")

    def get(self, name: str) -> Collection | None:
        with self._lock:
            return self._collections.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._collections)

    def get_or_create(self, name: str, model: str, fingerprint: str, dimension: int) -> Collection:
        """The collection `name`, created durably (with this model and dimension) when it does not exist."""
        self.check_name(name)
        with self._lock:
            found = self._collections.get(name)
            if found is not None:
                return found
            info = CollectionInfo(name, model, fingerprint, int(dimension), self.index_kind)
            staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".creating-{name}-"))
            os.chmod(staging, 0o755)
            meta = {"format": FORMAT, "info": info.__dict__}
            atomic_write(staging / "collection.json", json.dumps(meta, indent=2).encode("utf-8"))
            os.replace(staging, self.root / name)
            fsync_dir(self.root)
            collection = Collection(self.root / name, info, **self._options)
            self._collections[name] = collection
            return collection

    def snapshot_all(self) -> int:
        """Snapshot every collection with logged writes; returns how many were written."""
        return sum(c.snapshot() for c in list(self._collections.values()))

    def close(self) -> None:
        with self._lock:
            for collection in self._collections.values():
                collection.close()
            self._collections.clear()
