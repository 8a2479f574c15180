"""The embedded collection store: FAISS indexes plus a write-ahead log and snapshots (no torch here).

On disk, one directory per collection under the index root:

    <root>/.lock                     held (fcntl) by the one process that has the store open
    <root>/<name>/collection.json    name, model, model fingerprint, dimension, index kind (written once)
    <root>/<name>/wal.log            write-ahead log: records appended and fsynced before a write is acked
    <root>/<name>/snapshot.json      the last snapshot: its log sequence number, the index file's name,
                                     and the item table (FAISS label -> id, metadata)
    <root>/<name>/index-<lsn>.faiss  the FAISS index of that snapshot

A write (upsert or delete) takes the collection's lock, gets the next log sequence
number (LSN), appends one record to the log with unbuffered `os.write`, fsyncs it,
applies it to the in-memory index and only then returns, so an acknowledged write
survives a crash. A log record is ``b"SYNW" | length u32 | crc32 u32 | payload``
(JSON; vectors as base64 float32 LE): a record cut short by a crash (the last one)
fails the length or CRC check and is dropped on replay, and the log is truncated
back to the last whole record.

When the append or its fsync fails (ENOSPC on a full volume, EIO), the log is
truncated back to the end of the last whole record and fsynced, nothing is applied,
and the caller gets `StoreFull` (RESOURCE_EXHAUSTED) or `StoreUnavailable` naming
the volume: a refused write never comes back after a restart, and the next write
reuses the refused one's LSN on a clean log. (The log is never written through a
buffered file: a buffer keeps the bytes a failed flush could not write and writes
them later, behind the caller's back.) `fault()` reports the failure for health
until a write succeeds again or, for a full volume, space is free again.

Replay applies records in LSN order and refuses to start on a log whose LSNs repeat
or skip (that log disagrees with itself; an operator must look) rather than guessing.

A snapshot (every `snapshot_every` records, every `snapshot_interval_s` seconds from
the store's own thread, and on close) writes the index with `faiss.write_index` to a
temp file and `os.replace`s it to ``index-<lsn>.faiss``, then replaces snapshot.json
the same way (the commit point; directories are fsynced too), then empties the log.
On start the snapshot is loaded and log records with an LSN above the snapshot's are
replayed, so a crash between any two of those steps loses nothing and applies
nothing twice; temp files that a crash left behind are removed.

Index kinds: ``flat-ip`` (exact inner product, `IndexFlatIP` in an `IndexIDMap2`;
replaced and deleted vectors are removed) and ``hnsw`` (`IndexHNSWFlat`, inner
product, in an `IndexIDMap2`; HNSW cannot remove vectors, so replaced and deleted
labels become tombstones that searches skip, and a snapshot rebuilds the graph
once they exceed a quarter of it). Metadata filters use an inverted index
((key, value) -> labels) and FAISS's ID selectors; on HNSW, a filter that leaves
few items is answered exactly from their stored vectors.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import struct
import tempfile
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import faiss
import numpy as np

from models.files import atomic_write, atomic_write_with, fsync_dir
from services.embedding.store import (
    INDEX_KINDS,
    NAME_PATTERN,
    CollectionInfo,
    CollectionNotFound,
    CollectionStore,
    Hit,
    StoredItem,
    StoreError,
    StoreFull,
    StoreUnavailable,
    check_items,
    check_name,
    check_query,
    with_size,
)

log = logging.getLogger(__name__)

FORMAT = "synesthesia-collection/1"
_MAGIC = b"SYNW"
_HEADER = struct.Struct("<4sII")  # magic, payload length, crc32 of the payload
_MAX_RECORD_BYTES = 1 << 30
# HNSW: rebuild the graph at a snapshot once tombstones exceed this share of its vectors.
_REBUILD_DEAD_SHARE = 0.25
# HNSW with a metadata filter: at most this many matching items are scored exactly instead.
_EXACT_FILTER_MAX = 2048
# A full volume counts as recovered (for health) once this much is free again.
_RECOVERED_FREE_BYTES = 1 << 20
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


# faiss.write_index reports a failed write (a full disk) as RuntimeError, not OSError.
_SNAPSHOT_ERRORS = (OSError, RuntimeError)


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


class LogCorrupted(StoreError):
    """A log whose sequence numbers repeat or skip: refusing to guess which record is right."""


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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _remove_stale_temp_files(directory: Path) -> None:
    """Temp files of snapshots (or creations) that a crash cut short: never committed, never read."""
    for stale in directory.glob(".*.tmp"):
        log.info("removing %s, left by a snapshot cut short", stale)
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


# --- one collection -----------------------------------------------------------------------

class _Collection:
    """One named collection: an index plus its item table, its log and its snapshots. Thread-safe."""

    def __init__(self, store: "FaissStore", directory: Path, info: CollectionInfo) -> None:
        self.store = store
        self.directory = directory
        self.info = info
        self._lock = threading.Lock()
        self._items: dict[int, tuple[str, dict[str, str]]] = {}  # label -> (id, metadata)
        self._labels: dict[str, int] = {}  # id -> label
        self._postings: dict[tuple[str, str], set[int]] = {}  # (key, value) -> live labels
        self._dead: set[int] = set()  # hnsw tombstones: labels in the index that no longer count
        self._next_label = 0
        self._lsn = 0  # last applied log sequence number
        self._snapshot_lsn = 0
        self._log_records = 0  # records in the log since the last snapshot
        self._broken: str | None = None  # the log could not be restored after a failed append
        self._dropped = False
        self._index = self._new_index()
        _remove_stale_temp_files(directory)
        self._recover()
        self._log_fd = os.open(self.directory / "wal.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._log_bytes = os.fstat(self._log_fd).st_size  # end of the last whole record

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._items)

    # index ---------------------------------------------------------------------------------
    def _new_index(self) -> faiss.Index:
        if self.info.index_kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.info.dimension, self.store.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = max(40, 2 * self.store.hnsw_m)
        else:
            inner = faiss.IndexFlatIP(self.info.dimension)
        return faiss.IndexIDMap2(inner)

    def _forget(self, label: int) -> None:
        _, metadata = self._items.pop(label)
        for pair in metadata.items():
            postings = self._postings.get(pair)
            if postings is not None:
                postings.discard(label)
                if not postings:
                    del self._postings[pair]
        if self.info.index_kind == "hnsw":
            self._dead.add(label)
        else:
            self._index.remove_ids(np.array([label], dtype=np.int64))

    def _remember(self, label: int, id_: str, metadata: dict[str, str]) -> None:
        self._labels[id_] = label
        self._items[label] = (id_, metadata)
        for pair in metadata.items():
            self._postings.setdefault(pair, set()).add(label)

    def _apply(self, record: dict) -> None:
        if record["op"] == "upsert":
            vectors = _vectors_from_text(record["vectors"], self.info.dimension)
            labels = np.array([item["label"] for item in record["items"]], dtype=np.int64)
            for item in record["items"]:
                old = self._labels.pop(item["id"], None)
                if old is not None:
                    self._forget(old)
                self._remember(item["label"], item["id"], dict(item.get("metadata", {})))
            self._index.add_with_ids(vectors, labels)
            self._next_label = max(self._next_label, int(labels.max()) + 1)
        elif record["op"] == "delete":
            for id_ in record["ids"]:
                label = self._labels.pop(id_, None)
                if label is not None:
                    self._forget(label)
        else:
            raise LogCorrupted("collection", f"unknown log record op {record['op']!r}")
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
                self._remember(int(label), id_, metadata)
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
        # The log's LSNs run consecutively. Records at or below the snapshot's were written
        # before it (a crash between its commit and the log's truncation) and are skipped.
        previous = None
        for position, record in enumerate(records):
            lsn = int(record["lsn"])
            if previous is not None and lsn != previous + 1:
                raise LogCorrupted("collection", f"{wal}: record {position} has sequence number {lsn} after "
                                                 f"{previous}; the log disagrees with itself, refusing to replay it")
            previous = lsn
        replayed = 0
        for record in records:
            lsn = int(record["lsn"])
            if lsn <= self._lsn:
                continue
            if lsn != self._lsn + 1:
                raise LogCorrupted("collection", f"{wal}: the log resumes at sequence number {lsn}, but the "
                                                 f"snapshot ends at {self._lsn}: records are missing")
            self._apply(record)
            replayed += 1
        self._log_records = len(records)
        if replayed:
            log.info("collection %s: replayed %d log records (lsn %d)", self.name, replayed, self._lsn)

    # writes --------------------------------------------------------------------------------
    def _append(self, payload: dict) -> None:
        """Append one record durably, or leave the log exactly as it was and raise."""
        if self._dropped:  # a writer that looked the collection up just before DropCollection
            raise CollectionNotFound(self.name)
        if self._broken:
            raise StoreUnavailable("collection", self._broken)
        data = encode_record(payload)
        try:
            _write_all(self._log_fd, data)
            os.fsync(self._log_fd)
        except OSError as exc:
            self._undo_append(exc)
        self._log_bytes += len(data)
        self._log_records += 1

    def _undo_append(self, exc: OSError) -> None:
        volume = self.store.volume_message()
        try:
            os.ftruncate(self._log_fd, self._log_bytes)
            os.fsync(self._log_fd)
        except OSError as again:
            # The log may hold part of the refused record: no further write may follow it. A restart
            # drops the torn tail (its CRC fails); until then this collection refuses writes.
            self._broken = (f"the write-ahead log of collection {self.name!r} could not be restored after a failed "
                            f"write ({os.strerror(again.errno or 0)}) on {volume}; restart the service")
            self.store.note_fault(self._broken)
            log.error("%s", self._broken)
            raise StoreUnavailable("collection", self._broken) from None
        reason = os.strerror(exc.errno or 0)
        if exc.errno in _FULL_ERRNOS:
            message = f"no space left on {volume}: the write was not applied; free space there and retry"
            self.store.note_fault(message, full=True)
            log.warning("collection %s: append refused (%s); the log is back at its last whole record",
                        self.name, reason)
            raise StoreFull("items", message) from None
        message = f"writing to {volume} failed ({reason}): the write was not applied; retry later"
        self.store.note_fault(message)
        log.error("collection %s: append failed (%s); the log is back at its last whole record", self.name, reason)
        raise StoreUnavailable("items", message) from None

    def upsert(self, ids: Sequence[str], vectors: np.ndarray,
               metadata: Sequence[Mapping[str, str]] | None) -> tuple[int, int]:
        ids, vectors, metadata = check_items(self.info, ids, vectors, metadata)
        with self._lock:
            items = [{"id": id_, "label": self._next_label + k, "metadata": m}
                     for k, (id_, m) in enumerate(zip(ids, metadata))]
            record = {"lsn": self._lsn + 1, "op": "upsert", "items": items, "vectors": _vectors_to_text(vectors)}
            self._append(record)
            self._apply(record)
            self.store.note_success()
            self._maybe_snapshot()
            return len(ids), len(self._items)

    def delete(self, ids: Sequence[str]) -> tuple[int, int]:
        with self._lock:
            present = [id_ for id_ in dict.fromkeys(ids) if id_ in self._labels]
            if present:
                record = {"lsn": self._lsn + 1, "op": "delete", "ids": present}
                self._append(record)
                self._apply(record)
                self.store.note_success()
                self._maybe_snapshot()
            return len(present), len(self._items)

    # reads ---------------------------------------------------------------------------------
    def _matching(self, where: Mapping[str, str]) -> set[int]:
        sets = sorted((self._postings.get(pair, set()) for pair in where.items()), key=len)
        return set(sets[0]).intersection(*sets[1:]) if sets else set()

    def search(self, query: np.ndarray, top_k: int, where: Mapping[str, str] | None) -> list[Hit]:
        query = check_query(self.info, query)
        with self._lock:
            if not self._items:
                return []
            hnsw = self.info.index_kind == "hnsw"
            if where:
                allowed = self._matching(where)
                if not allowed:
                    return []
                if hnsw and len(allowed) <= _EXACT_FILTER_MAX:
                    return self._exact(query, np.fromiter(allowed, dtype=np.int64, count=len(allowed)), top_k)
                selector = faiss.IDSelectorBatch(np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
                want = min(top_k, len(allowed))
                params = (faiss.SearchParametersHNSW(efSearch=max(self.store.hnsw_ef_search, want), sel=selector)
                          if hnsw else faiss.SearchParameters(sel=selector))
            else:
                want = min(top_k, len(self._items)) + len(self._dead)
                params = faiss.SearchParametersHNSW(efSearch=max(self.store.hnsw_ef_search, want)) if hnsw else None
            scores, labels = self._index.search(query, want, params=params)
            hits = []
            for score, label in zip(scores[0], labels[0]):
                entry = self._items.get(int(label)) if label >= 0 else None
                if entry is not None:
                    hits.append(Hit(entry[0], float(score), dict(entry[1])))
                    if len(hits) == top_k:
                        break
            return hits

    def _exact(self, query: np.ndarray, labels: np.ndarray, top_k: int) -> list[Hit]:
        scores = self._index.reconstruct_batch(labels) @ query[0]
        order = np.argsort(-scores, kind="stable")[:top_k]
        entries = [self._items[int(labels[i])] for i in order]
        return [Hit(id_, float(scores[i]), dict(metadata)) for i, (id_, metadata) in zip(order, entries)]

    def items(self, batch_size: int) -> Iterator[list[StoredItem]]:
        with self._lock:
            entries = [(label, id_, dict(m)) for label, (id_, m) in self._items.items()]
        for start in range(0, len(entries), batch_size):
            with self._lock:
                live = [(label, id_, m) for label, id_, m in entries[start:start + batch_size]
                        if self._labels.get(id_) == label]  # still there, unchanged
                vectors = self._index.reconstruct_batch(np.array([e[0] for e in live], dtype=np.int64)) \
                    if live else None
            if live:
                yield [StoredItem(id_, vectors[k], metadata) for k, (_, id_, metadata) in enumerate(live)]

    def item(self, item_id: str) -> StoredItem | None:
        with self._lock:
            label = self._labels.get(item_id)
            if label is None:
                return None
            vector = self._index.reconstruct(int(label))
            return StoredItem(item_id, np.asarray(vector, dtype=np.float32), dict(self._items[label][1]))

    # snapshots -----------------------------------------------------------------------------
    def _maybe_snapshot(self) -> None:
        if self.store.snapshot_every and self._log_records >= self.store.snapshot_every:
            try:
                self._snapshot()
            except _SNAPSHOT_ERRORS as exc:  # the write is logged and acknowledged; the snapshot waits
                log.warning("collection %s: snapshot failed (%s); the log keeps every write", self.name,
                            _reason(exc))

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
        if self._broken or self._dropped:
            return
        if self.info.index_kind == "hnsw" and len(self._dead) > _REBUILD_DEAD_SHARE * max(1, self._index.ntotal):
            self._rebuild_without_tombstones()
        index_name = f"index-{self._lsn}.faiss"
        atomic_write_with(self.directory / index_name, lambda tmp: faiss.write_index(self._index, tmp))
        state = {"format": FORMAT, "lsn": self._lsn, "index_file": index_name, "next_label": self._next_label,
                 "items": [[label, id_, metadata] for label, (id_, metadata) in self._items.items()]}
        atomic_write(self.directory / "snapshot.json", json.dumps(state, separators=(",", ":")).encode("utf-8"))
        self._snapshot_lsn = self._lsn
        # Committed: the log's records are all at or below the snapshot's LSN now.
        os.ftruncate(self._log_fd, 0)
        os.fsync(self._log_fd)
        self._log_bytes = 0
        self._log_records = 0
        for old in self.directory.glob("index-*.faiss"):
            if old.name != index_name:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()

    def close(self) -> None:
        with self._lock:
            if self._lsn != self._snapshot_lsn or self._log_records:
                try:
                    self._snapshot()
                except _SNAPSHOT_ERRORS as exc:  # the log still holds every write: nothing is lost
                    log.warning("collection %s: snapshot at close failed (%s); the log will be replayed",
                                self.name, _reason(exc))
            os.close(self._log_fd)


# --- the store ----------------------------------------------------------------------------

class FaissStore(CollectionStore):
    """Every collection under `root`, loaded on start. One process at a time (a lock file says so)."""

    def __init__(self, root: str | Path, index_kind: str = "flat-ip", snapshot_every: int = 1000,
                 snapshot_interval_s: float = 0.0, hnsw_m: int = 32, hnsw_ef_search: int = 64,
                 setting: str = "SYN_EMBEDDING_STORE") -> None:
        if index_kind not in INDEX_KINDS:
            raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {index_kind!r}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.location = str(self.root.resolve())
        self.setting = setting  # the SYN_* setting that named root, for messages
        self.index_kind = index_kind
        self.snapshot_every = snapshot_every
        self.hnsw_m = hnsw_m
        self.hnsw_ef_search = hnsw_ef_search
        self._lock = threading.Lock()
        self._fault: str | None = None
        self._fault_full = False
        self._lock_file = self._take_lock()
        self._collections: dict[str, _Collection] = {}
        _remove_stale_temp_files(self.root)
        for directory in sorted(self.root.iterdir()):
            meta = directory / "collection.json"
            if directory.is_dir() and directory.name.startswith((".creating-", ".dropping-")):
                shutil.rmtree(directory, ignore_errors=True)  # a creation (never acknowledged) or drop cut short
            elif directory.is_dir() and meta.exists() and NAME_PATTERN.fullmatch(directory.name):
                info = CollectionInfo(**json.loads(meta.read_text(encoding="utf-8"))["info"])
                self._collections[info.name] = _Collection(self, directory, info)
        self._stop = threading.Event()
        self._snapshots = None
        if snapshot_interval_s > 0:
            self._snapshots = threading.Thread(target=self._snapshot_periodically, args=(snapshot_interval_s,),
                                               name="faiss-snapshots", daemon=True)
            self._snapshots.start()

    def _take_lock(self):
        # fcntl (POSIX) locks are per process: a second process is refused, while a test in this
        # process may reopen the directory as a restarted server would.
        handle = open(self.root / ".lock", "a+")
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise StoreUnavailable("collection", f"another process has the index {self.location} open; stop it "
                                                 f"first (one process per index directory)") from None
        return handle

    # health --------------------------------------------------------------------------------
    def volume_message(self) -> str:
        return f"the index volume {self.location} ({self.setting})"

    def note_fault(self, message: str, full: bool = False) -> None:
        self._fault, self._fault_full = message, full

    def note_success(self) -> None:
        self._fault = None

    def fault(self) -> str | None:
        with self._lock:
            broken = next((c._broken for c in self._collections.values() if c._broken), None)
        if broken:
            return broken
        fault = self._fault
        if fault and self._fault_full:
            with contextlib.suppress(OSError):
                if shutil.disk_usage(self.root).free >= _RECOVERED_FREE_BYTES:
                    self._fault = None  # room again: let writes try
                    return None
        return fault

    # the interface -------------------------------------------------------------------------
    def _get(self, name: str) -> _Collection:
        with self._lock:
            found = self._collections.get(name)
        if found is None:
            raise CollectionNotFound(name)
        return found

    def create(self, name: str, model: str, fingerprint: str, dimension: int,
               index_kind: str | None = None) -> CollectionInfo:
        check_name(name)
        kind = index_kind or self.index_kind
        if kind not in INDEX_KINDS:
            raise StoreError("index_kind", f"index kind must be one of {', '.join(INDEX_KINDS)}")
        with self._lock:
            found = self._collections.get(name)
            if found is not None:
                return with_size(found.info, found.size)
            info = CollectionInfo(name, model, fingerprint, int(dimension), kind)
            staging = None
            try:
                staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".creating-{name}-"))
                os.chmod(staging, 0o755)
                meta = {"format": FORMAT, "info": {k: v for k, v in info.__dict__.items() if k != "size"}}
                atomic_write(staging / "collection.json", json.dumps(meta, indent=2).encode("utf-8"))
                os.replace(staging, self.root / name)
                fsync_dir(self.root)
            except OSError as exc:
                if staging is not None:
                    shutil.rmtree(staging, ignore_errors=True)
                if exc.errno in _FULL_ERRNOS:
                    message = f"no space left on {self.volume_message()}: collection {name!r} was not created"
                    self.note_fault(message, full=True)
                    raise StoreFull("collection", message) from None
                raise StoreUnavailable("collection", f"creating collection {name!r} on {self.volume_message()} "
                                                     f"failed ({os.strerror(exc.errno or 0)})") from None
            collection = _Collection(self, self.root / name, info)
            self._collections[name] = collection
            return info

    def get(self, name: str) -> CollectionInfo | None:
        with self._lock:
            found = self._collections.get(name)
        return with_size(found.info, found.size) if found is not None else None

    def list(self) -> list[CollectionInfo]:
        with self._lock:
            found = sorted(self._collections.values(), key=lambda c: c.name)
        return [with_size(c.info, c.size) for c in found]

    def upsert(self, name: str, ids: Sequence[str], vectors: np.ndarray,
               metadata: Sequence[Mapping[str, str]] | None = None) -> tuple[int, int]:
        return self._get(name).upsert(ids, vectors, metadata)

    def delete(self, name: str, ids: Sequence[str]) -> tuple[int, int]:
        return self._get(name).delete(ids)

    def search(self, name: str, query: np.ndarray, top_k: int,
               where: Mapping[str, str] | None = None) -> list[Hit]:
        return self._get(name).search(query, top_k, where)

    def items(self, name: str, batch_size: int = 1000) -> Iterator[list[StoredItem]]:
        return self._get(name).items(batch_size)

    def item(self, name: str, item_id: str) -> StoredItem | None:
        return self._get(name).item(item_id)

    def drop(self, name: str) -> bool:
        check_name(name)
        with self._lock:
            collection = self._collections.pop(name, None)
            if collection is None:
                return False
            with collection._lock:
                os.close(collection._log_fd)
                collection._dropped = True
            # Rename first (atomic), then delete: a crash in between leaves only a .dropping- directory.
            doomed = self.root / f".dropping-{name}"
            os.replace(self.root / name, doomed)
            fsync_dir(self.root)
            shutil.rmtree(doomed, ignore_errors=True)
            return True

    def snapshot_all(self) -> int:
        """Snapshot every collection with logged writes; returns how many were written."""
        with self._lock:
            collections = list(self._collections.values())
        return sum(c.snapshot() for c in collections)

    def _snapshot_periodically(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                written = self.snapshot_all()
                if written:
                    log.info("snapshot of %d collections", written)
            except Exception as exc:  # noqa: BLE001 - the log keeps every write; try again next time
                log.warning("periodic snapshot failed (%s); the logs keep every write", exc)

    def close(self) -> None:
        self._stop.set()
        if self._snapshots is not None:
            self._snapshots.join()
        with self._lock:
            for collection in self._collections.values():
                collection.close()
            self._collections.clear()
            self._lock_file.close()
