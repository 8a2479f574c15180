"""The collection store in PostgreSQL + pgvector, for more than one machine (no torch here).

Chosen with ``SYN_EMBEDDING_STORE=postgresql://user:password@host:port/database``.
Several embedding replicas can share one database; PostgreSQL brings replication,
backups (pg_dump, PITR) and SQL access to the items.

Layout: a catalogue table, ``syn_collections`` (name, model, weights fingerprint,
dimension, index kind, item count, and the name of the collection's item table),
and **one table per collection**, ``syn_items_<n>`` (id text primary key, embedding
vector(d), metadata jsonb). One table per collection rather than one table with a
collection column because:

- pgvector's HNSW index needs one fixed dimension per indexed column, and
  collections differ in dimension (one per model);
- an HNSW graph per collection means a search in one collection never walks through
  another's vectors (with one shared graph, ``WHERE collection = x`` is a
  post-filter: a small collection beside a big one would get too few hits);
- dropping a collection is ``DROP TABLE`` (instant, space returned), and each
  collection can be exact ("flat-ip": no vector index, a sequential scan) or "hnsw"
  (``USING hnsw (embedding vector_ip_ops)``);
- the cost, one table per collection, is fine for the hundreds to thousands of
  collections a deployment has.

Metadata is ``jsonb`` with a GIN index (``jsonb_path_ops``); a filter is
``metadata @> '{"key": "value"}'``. On HNSW collections a filtered search uses
pgvector's iterative index scan (0.8+), so a selective filter still fills top_k;
a search with top_k above hnsw.ef_search's ceiling (1000) is answered exactly.

Every upsert or delete is one transaction that first locks the collection's
catalogue row (writers to one collection are serialised, as in the FAISS store,
so the item count stays exact and two writers never deadlock on each other's
rows) and is acknowledged only after COMMIT returns, i.e. after PostgreSQL has
flushed its WAL (synchronous_commit stays on). Connections come from a
psycopg_pool pool that checks each connection before lending it and, when the
database goes away, reconnects on demand: while it is unreachable every call ends
in `StoreUnavailable` (UNAVAILABLE) within `timeout_s`, and `fault()` (the health
status) says so; once it is back, the next call or health probe reconnects.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from services.embedding.store import (
    INDEX_KINDS,
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
)

log = logging.getLogger(__name__)
# The pool logs every failed reconnection attempt; the service logs the outage once (health changes).
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

CATALOGUE = "syn_collections"
# pgvector caps hnsw.ef_search at 1000; a larger top_k is answered by an exact scan.
_MAX_EF_SEARCH = 1000
# A health probe is skipped while some call succeeded this recently.
_HEALTHY_FOR_S = 2.0
_SCHEMA_LOCK = 0x53594E45  # pg_advisory_xact_lock key: one replica sets the schema up at a time

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {CATALOGUE} (
    name text PRIMARY KEY,
    table_name text NOT NULL UNIQUE,
    model text NOT NULL,
    fingerprint text NOT NULL,
    dimension integer NOT NULL CHECK (dimension BETWEEN 1 AND 16000),
    index_kind text NOT NULL,
    size bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE IF NOT EXISTS syn_item_tables;
"""


def _location(url: str) -> str:
    """The database a URL names, without its password (for messages and logs)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparseable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


class PostgresStore(CollectionStore):
    """Collections in PostgreSQL + pgvector; see the module docstring."""

    def __init__(self, url: str, index_kind: str = "flat-ip", hnsw_m: int = 32, hnsw_ef_search: int = 64,
                 pool_size: int = 8, timeout_s: float = 5.0) -> None:
        if index_kind not in INDEX_KINDS:
            raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {index_kind!r}")
        self.location = _location(url)
        self.index_kind = index_kind
        self.hnsw_m = hnsw_m
        self.hnsw_ef_search = min(hnsw_ef_search, _MAX_EF_SEARCH)
        self.timeout_s = timeout_s
        self._iterative_scan = False  # pgvector >= 0.8: filtered HNSW scans go on until top_k match
        self._last_ok = 0.0
        self._fault: str | None = None
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        self._pool = ConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), open=False, name="synesthesia-embedding",
            kwargs={"connect_timeout": max(1, round(timeout_s)), "application_name": "synesthesia-embedding",
                    "options": f"-c statement_timeout={int(timeout_s * 1000)}"},
            configure=self._configure, check=ConnectionPool.check_connection,
            # Give up a background reconnection quickly: the next call (or health probe) starts a new
            # one at once, instead of waiting out an exponential backoff that grows past the outage.
            reconnect_timeout=max(1.0, timeout_s), timeout=timeout_s)
        self._pool.open(wait=False)

    # connections ---------------------------------------------------------------------------
    def _configure(self, conn: psycopg.Connection) -> None:
        """Every new connection: the schema exists (first one only), vectors adapt to numpy."""
        with self._schema_lock:
            if not self._schema_ready:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None:
                        conn.execute("CREATE EXTENSION vector")
                    conn.execute(_SCHEMA)
                version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
                conn.commit()
                self._iterative_scan = tuple(int(x) for x in version.split(".")[:2]) >= (0, 8)
                log.info("collection store %s: pgvector %s", self.location, version)
                self._schema_ready = True
        register_vector(conn)
        conn.commit()

    def _unavailable(self, why: str) -> StoreUnavailable:
        self._fault = f"the collection database {self.location} ({self.setting}) is unavailable: {why}"
        return StoreUnavailable("collection", self._fault)

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in one transaction; database failures become StoreErrors."""
        try:
            with self._pool.connection(timeout=self.timeout_s) as conn, conn.transaction():
                yield conn
        except PoolTimeout:
            raise self._unavailable(f"no connection within {self.timeout_s:g}s "
                                    f"(SYN_EMBEDDING_STORE_TIMEOUT_S)") from None
        except psycopg.errors.DiskFull:  # before OperationalError, its base class
            raise StoreFull("items", f"the collection database {self.location} ({self.setting}) has no disk "
                                     f"space left: the write was not applied") from None
        except psycopg.errors.QueryCanceled:
            raise self._unavailable(f"a statement took longer than {self.timeout_s:g}s "
                                    f"(SYN_EMBEDDING_STORE_TIMEOUT_S)") from None
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):  # nothing was applied
            raise StoreUnavailable("collection", "the write conflicted with a concurrent one and was rolled back; "
                                                 "retry it") from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # connection lost, server gone
            raise self._unavailable(str(exc).strip().splitlines()[0][:200] or type(exc).__name__) from None
        self._last_ok = time.monotonic()
        self._fault = None

    @staticmethod
    def _table(name: str) -> sql.Identifier:
        return sql.Identifier(name)

    def _lookup(self, conn: psycopg.Connection, name: str, lock: bool = False) -> tuple[CollectionInfo, str]:
        query = (f"SELECT name, model, fingerprint, dimension, index_kind, size, table_name FROM {CATALOGUE} "
                 f"WHERE name = %s" + (" FOR NO KEY UPDATE" if lock else ""))
        row = conn.execute(query, (name,)).fetchone()
        if row is None:
            raise CollectionNotFound(name)
        return CollectionInfo(*row[:5], size=row[5]), row[6]

    # the interface -------------------------------------------------------------------------
    def create(self, name: str, model: str, fingerprint: str, dimension: int,
               index_kind: str | None = None) -> CollectionInfo:
        check_name(name)
        kind = index_kind or self.index_kind
        if kind not in INDEX_KINDS:
            raise StoreError("index_kind", f"index kind must be one of {', '.join(INDEX_KINDS)}")
        with self._transaction() as conn:
            # Concurrent creators: the second waits on the primary key, then finds the first's row.
            row = conn.execute(
                f"INSERT INTO {CATALOGUE} (name, table_name, model, fingerprint, dimension, index_kind) "
                f"VALUES (%s, 'syn_items_' || nextval('syn_item_tables'), %s, %s, %s, %s) "
                f"ON CONFLICT (name) DO NOTHING RETURNING table_name",
                (name, model, fingerprint, int(dimension), kind)).fetchone()
            if row is None:
                return self._lookup(conn, name)[0]
            table = self._table(row[0])
            conn.execute(sql.SQL("CREATE TABLE {} (id text PRIMARY KEY, embedding vector({}) NOT NULL, "
                                 "metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb)")
                         .format(table, sql.Literal(int(dimension))))
            conn.execute(sql.SQL("CREATE INDEX ON {} USING gin (metadata jsonb_path_ops)").format(table))
            if kind == "hnsw":
                conn.execute(sql.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_ip_ops) "
                                     "WITH (m = {}, ef_construction = {})")
                             .format(table, sql.Literal(self.hnsw_m), sql.Literal(max(40, 2 * self.hnsw_m))))
            return CollectionInfo(name, model, fingerprint, int(dimension), kind)

    def get(self, name: str) -> CollectionInfo | None:
        with self._transaction() as conn:
            try:
                return self._lookup(conn, name)[0]
            except CollectionNotFound:
                return None

    def list(self) -> list[CollectionInfo]:
        with self._transaction() as conn:
            rows = conn.execute(f"SELECT name, model, fingerprint, dimension, index_kind, size FROM {CATALOGUE} "
                                f"ORDER BY name").fetchall()
        return [CollectionInfo(*row[:5], size=row[5]) for row in rows]

    def upsert(self, name: str, ids: Sequence[str], vectors: np.ndarray,
               metadata: Sequence[Mapping[str, str]] | None = None) -> tuple[int, int]:
        with self._transaction() as conn:
            info, table = self._lookup(conn, name, lock=True)
            ids, vectors, metadata = check_items(info, ids, vectors, metadata)
            rows = conn.execute(sql.SQL(
                "INSERT INTO {} (id, embedding, metadata) "
                "SELECT * FROM unnest(%s::text[], %s::vector[], %s::jsonb[]) "
                "ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata "
                "RETURNING (xmax = 0)").format(self._table(table)),
                (ids, list(vectors), [Jsonb(m) for m in metadata])).fetchall()
            inserted = sum(1 for (fresh,) in rows if fresh)
            size = conn.execute(f"UPDATE {CATALOGUE} SET size = size + %s WHERE name = %s RETURNING size",
                                (inserted, name)).fetchone()[0]
        return len(ids), int(size)

    def delete(self, name: str, ids: Sequence[str]) -> tuple[int, int]:
        with self._transaction() as conn:
            _, table = self._lookup(conn, name, lock=True)
            removed = conn.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._table(table)),
                                   (list(dict.fromkeys(ids)),)).rowcount
            size = conn.execute(f"UPDATE {CATALOGUE} SET size = size - %s WHERE name = %s RETURNING size",
                                (removed, name)).fetchone()[0]
        return int(removed), int(size)

    def search(self, name: str, query: np.ndarray, top_k: int,
               where: Mapping[str, str] | None = None) -> list[Hit]:
        with self._transaction() as conn:
            info, table = self._lookup(conn, name)
            vector = check_query(info, query)[0]
            if info.index_kind == "hnsw":
                if top_k > _MAX_EF_SEARCH:  # beyond what the graph search returns: scan exactly
                    conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
                else:
                    conn.execute("SELECT set_config('hnsw.ef_search', %s, true)",
                                 (str(max(self.hnsw_ef_search, top_k)),))
                    if where and self._iterative_scan:
                        conn.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")
            condition = sql.SQL("WHERE metadata @> %(where)s") if where else sql.SQL("")
            rows = conn.execute(sql.SQL(
                "SELECT id, -(embedding <#> %(q)s) AS score, metadata FROM {} {} "
                "ORDER BY embedding <#> %(q)s LIMIT %(k)s").format(self._table(table), condition),
                {"q": vector, "k": int(top_k), "where": Jsonb(dict(where or {}))}).fetchall()
        return [Hit(id_, float(score), dict(metadata)) for id_, score, metadata in rows]

    def items(self, name: str, batch_size: int = 1000) -> Iterator[list[StoredItem]]:
        after = ""  # keyset pagination by id: each batch its own short transaction
        while True:
            with self._transaction() as conn:
                _, table = self._lookup(conn, name)
                rows = conn.execute(sql.SQL("SELECT id, embedding, metadata FROM {} WHERE id > %s "
                                            "ORDER BY id LIMIT %s").format(self._table(table)),
                                    (after, batch_size)).fetchall()
            if not rows:
                return
            yield [StoredItem(id_, np.asarray(vector.to_numpy(), dtype=np.float32), dict(metadata))
                   for id_, vector, metadata in rows]
            after = rows[-1][0]

    def item(self, name: str, item_id: str) -> StoredItem | None:
        with self._transaction() as conn:
            _, table = self._lookup(conn, name)
            row = conn.execute(sql.SQL("SELECT embedding, metadata FROM {} WHERE id = %s").format(self._table(table)),
                               (item_id,)).fetchone()
        if row is None:
            return None
        return StoredItem(item_id, np.asarray(row[0].to_numpy(), dtype=np.float32), dict(row[1]))

    def drop(self, name: str) -> bool:
        check_name(name)
        with self._transaction() as conn:
            row = conn.execute(f"DELETE FROM {CATALOGUE} WHERE name = %s RETURNING table_name", (name,)).fetchone()
            if row is None:
                return False
            conn.execute(sql.SQL("DROP TABLE {}").format(self._table(row[0])))
            return True

    def fault(self) -> str | None:
        if self._fault is None and time.monotonic() - self._last_ok < _HEALTHY_FOR_S:
            return None
        try:
            with self._transaction() as conn:
                conn.execute("SELECT 1")
        except StoreError as exc:
            return str(exc)
        return None

    def close(self) -> None:
        self._pool.close()
