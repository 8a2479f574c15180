"""The collection store interface: what the embedding service needs from wherever vectors live.

Two implementations, chosen by one setting (`SYN_EMBEDDING_STORE`, see `open_store`):

- `faiss_store.FaissStore`: embedded, one process, one disk: FAISS indexes plus a
  write-ahead log and snapshots per collection (the default, and the fastest here);
- `postgres_store.PostgresStore`: PostgreSQL + pgvector, for more than one machine
  (several embedding replicas, replication, backups and SQL access to the items).

The servicer knows only this module. Every method is synchronous and thread-safe
(the servicer runs them in worker threads); a write is durable when it returns.
Failures are `StoreError`s whose class says which gRPC status the caller gets:
`InvalidItems` -> INVALID_ARGUMENT, `DimensionMismatch` -> FAILED_PRECONDITION,
`CollectionNotFound` -> NOT_FOUND, `StoreFull` -> RESOURCE_EXHAUSTED,
`StoreUnavailable` -> UNAVAILABLE (retry later; a write that got it may or may not
have been applied, and an Upsert or Delete can simply be sent again).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

# Index kinds, the same names in every backend: "flat-ip" is exact inner-product search,
# "hnsw" an approximate graph index (FAISS IndexHNSWFlat, pgvector's hnsw with vector_ip_ops).
INDEX_KINDS: tuple[str, ...] = ("flat-ip", "hnsw")
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
NAME_RULE = "1 to 64 letters, digits, '-' or '_'"
# At most this much of a user-supplied name is echoed back in an error message.
ECHO_CHARS = 64


class StoreError(Exception):
    """A request the store refuses; `field` names the part of it (for the caller's error message)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class InvalidItems(StoreError):
    """Items the store cannot take as given (duplicate ids, non-finite vectors)."""


class DimensionMismatch(StoreError):
    """Vectors of another dimension than the collection's."""


class CollectionNotFound(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__("collection", f"no collection {echo(name)}")


class StoreFull(StoreError):
    """The volume or database has no room left: nothing of the refused write was kept."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or written now (database down, I/O error); retry later."""


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    model: str
    fingerprint: str  # weights fingerprint of the model the vectors came from
    dimension: int
    index_kind: str
    size: int = field(default=0, compare=False)  # items when this was read


@dataclass(frozen=True)
class Hit:
    id: str
    score: float  # inner product = cosine similarity for the unit vectors the service stores
    metadata: dict[str, str]


@dataclass(frozen=True)
class StoredItem:
    id: str
    vector: np.ndarray
    metadata: dict[str, str]


def echo(text: str) -> str:
    """A user-supplied name for an error message: quoted, at most ECHO_CHARS characters of it."""
    return repr(text[:ECHO_CHARS]) + ("..." if len(text) > ECHO_CHARS else "")


def check_name(name: str) -> str:
    # fullmatch: `re.match` with `$` would accept a trailing newline.
    if not NAME_PATTERN.fullmatch(name or ""):
        raise StoreError("collection", f"{echo(name)} is not a collection name: {NAME_RULE}")
    return name


def check_items(info: CollectionInfo, ids: Sequence[str], vectors: np.ndarray,
                metadata: Sequence[Mapping[str, str]] | None) -> tuple[list[str], np.ndarray, list[dict[str, str]]]:
    """The checks every backend makes before a write; returns float32 vectors and one dict per item."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != info.dimension:
        raise DimensionMismatch("vectors", f"collection {echo(info.name)} holds {info.dimension}-dimensional "
                                           f"vectors, got shape {tuple(vectors.shape)}")
    ids = list(ids)
    if len(ids) != len(vectors):
        raise InvalidItems("ids", f"{len(ids)} ids for {len(vectors)} vectors")
    if len(set(ids)) != len(ids):
        raise InvalidItems("ids", "an id occurs twice in one upsert")
    if not np.isfinite(vectors).all():
        raise InvalidItems("vectors", "vectors must be finite")
    metadata = [dict(m) for m in metadata] if metadata is not None else [{} for _ in ids]
    if len(metadata) != len(ids):
        raise InvalidItems("metadata", f"{len(metadata)} metadata maps for {len(ids)} ids")
    return ids, vectors, metadata


def check_query(info: CollectionInfo, query: np.ndarray) -> np.ndarray:
    query = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(1, -1))
    if query.shape[1] != info.dimension:
        raise DimensionMismatch("query", f"collection {echo(info.name)} holds {info.dimension}-dimensional "
                                         f"vectors, the query has {query.shape[1]}")
    if not np.isfinite(query).all():
        raise InvalidItems("query", "the query vector must be finite")
    return query


class CollectionStore(ABC):
    """Named collections of (id, unit vector, string metadata); see the module docstring."""

    #: Where the data lives, for messages and logs (a directory, or a database URL without password).
    location: str
    #: The SYN_* setting that chose `location`, named in messages about it.
    setting: str = "SYN_EMBEDDING_STORE"

    @abstractmethod
    def create(self, name: str, model: str, fingerprint: str, dimension: int,
               index_kind: str | None = None) -> CollectionInfo:
        """Create `name` durably for vectors of this model and dimension, or return the existing
        collection's info when it exists (the first creator wins; callers compare the model)."""

    @abstractmethod
    def get(self, name: str) -> CollectionInfo | None:
        """The collection's info with its current size, or None."""

    @abstractmethod
    def list(self) -> list[CollectionInfo]:
        """Every collection, sorted by name."""

    @abstractmethod
    def upsert(self, name: str, ids: Sequence[str], vectors: np.ndarray,
               metadata: Sequence[Mapping[str, str]] | None = None) -> tuple[int, int]:
        """Insert or replace items, all or nothing; durable when it returns. (items written, size after)."""

    @abstractmethod
    def delete(self, name: str, ids: Sequence[str]) -> tuple[int, int]:
        """Remove items by id (absent ids are ignored), all or nothing. (items removed, size after)."""

    @abstractmethod
    def search(self, name: str, query: np.ndarray, top_k: int,
               where: Mapping[str, str] | None = None) -> list[Hit]:
        """The `top_k` items nearest to `query`, best first, among those whose metadata holds every
        key/value pair of `where` (all items when it is empty)."""

    @abstractmethod
    def items(self, name: str, batch_size: int = 1000) -> Iterator[list[StoredItem]]:
        """Every item with its stored vector, in batches (for copying a collection to another store)."""

    def item(self, name: str, item_id: str) -> StoredItem | None:
        """One item by id with its stored vector, or None. Backends override this with their own
        lookup by id (an index, a primary key); this default scans `items`."""
        for batch in self.items(name):
            for found in batch:
                if found.id == item_id:
                    return found
        return None

    @abstractmethod
    def drop(self, name: str) -> bool:
        """Remove a collection and its items for good; False when there was none."""

    @abstractmethod
    def fault(self) -> str | None:
        """Why writes would fail now (a full volume, an unreachable database), or None when healthy.
        Cheap enough to call every second; the servicer reports it as the health status."""

    @abstractmethod
    def close(self) -> None:
        """Flush what needs flushing and release files and connections."""

    def __enter__(self) -> "CollectionStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def with_size(info: CollectionInfo, size: int) -> CollectionInfo:
    return replace(info, size=size)


def open_store(url: str, **options) -> CollectionStore:
    """The store a URL names: ``postgresql://...`` (or ``postgres://``) for PostgreSQL + pgvector;
    a directory path (or ``file:///path``) for the embedded FAISS store. `options` are the
    backend's keyword settings; those the chosen backend does not take are ignored."""
    if url.startswith(("postgresql://", "postgres://")):
        from services.embedding.postgres_store import PostgresStore

        return PostgresStore(url, **_accepted(PostgresStore, options))
    from services.embedding.faiss_store import FaissStore

    path = url[len("file://"):] if url.startswith("file://") else url
    return FaissStore(path, **_accepted(FaissStore, options))


def _accepted(cls, options: dict) -> dict:
    import inspect

    names = set(inspect.signature(cls.__init__).parameters)
    return {k: v for k, v in options.items() if k in names}
