"""Moving from the embedded store to PostgreSQL and back: the copy command carries ids, vectors,
metadata, model, fingerprint, dimension and index kind, so searches answer the same."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from services.embedding.faiss_store import FaissStore
from services.embedding.postgres_store import PostgresStore
from services.embedding.store import open_store
from tests.embedding.test_collections import unit_vectors
from tests.servers import REPO_ROOT


def copy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.embedding.copy_collections", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def everything(store, name):
    return {i.id: (i.vector, i.metadata) for batch in store.items(name) for i in batch}


def test_copy_faiss_to_postgres_and_back(tmp_path, postgres_url):
    v = unit_vectors(300, seed=9, dim=32)
    with FaissStore(tmp_path / "a") as source:
        source.create("flat", "embedding", "fp-1", 32)
        source.create("graph", "embedding", "fp-1", 32, index_kind="hnsw")
        source.upsert("flat", [f"f{i}" for i in range(300)], v, [{"k": str(i % 4)} for i in range(300)])
        source.upsert("graph", [f"g{i}" for i in range(120)], v[:120])
        source.delete("flat", ["f7"])
        expected = {name: everything(source, name) for name in ("flat", "graph")}
        queries = {name: [[h.id for h in source.search(name, v[q], 10, {"k": "1"} if name == "flat" else None)]
                          for q in range(0, 300, 37)] for name in ("flat", "graph")}

    done = copy(str(tmp_path / "a"), postgres_url)
    assert done.returncode == 0, done.stderr
    assert "flat: 299 items copied" in done.stdout and "graph: 120 items copied" in done.stdout
    assert "password" not in done.stdout
    with PostgresStore(postgres_url) as pg:
        assert [(c.name, c.model, c.fingerprint, c.dimension, c.index_kind, c.size) for c in pg.list()] == [
            ("flat", "embedding", "fp-1", 32, "flat-ip", 299), ("graph", "embedding", "fp-1", 32, "hnsw", 120)]
        for name in ("flat", "graph"):
            got = everything(pg, name)
            assert got.keys() == expected[name].keys()
            for id_, (vector, metadata) in got.items():
                np.testing.assert_allclose(vector, expected[name][id_][0], atol=1e-6)
                assert metadata == expected[name][id_][1]
        # Exact search answers identically; the small HNSW graphs find the same top 10 here too.
        assert [[h.id for h in pg.search("flat", v[q], 10, {"k": "1"})] for q in range(0, 300, 37)] == queries["flat"]
        assert [[h.id for h in pg.search("graph", v[q], 10)] for q in range(0, 300, 37)] == queries["graph"]

    # And back into a new directory, only one collection, as an exact index.
    back = copy(postgres_url, str(tmp_path / "b"), "--collection", "graph", "--index-kind", "flat-ip")
    assert back.returncode == 0, back.stderr
    with open_store(str(tmp_path / "b")) as again:
        assert [(c.name, c.index_kind, c.size) for c in again.list()] == [("graph", "flat-ip", 120)]
        assert everything(again, "graph").keys() == expected["graph"].keys()
    # Copying again is an idempotent upsert; a collection of another model in DEST is refused.
    assert copy(str(tmp_path / "a"), postgres_url).returncode == 0
    with FaissStore(tmp_path / "c") as other:
        other.create("flat", "other-model", "fp-2", 32)
    refused = copy(postgres_url, str(tmp_path / "c"), "--collection", "flat")
    assert refused.returncode == 1 and "other-model" in refused.stderr and "Traceback" not in refused.stderr
    missing = copy(str(tmp_path / "a"), postgres_url, "--collection", "nope")
    assert missing.returncode == 1 and "no collection 'nope'" in missing.stderr


@pytest.mark.parametrize("url", ["postgresql://syn:secret@127.0.0.1:1/none"])
def test_an_unreachable_database_is_a_clear_error(tmp_path, url):
    done = copy(str(tmp_path / "a"), url)
    assert done.returncode == 1 and "unavailable" in done.stderr and "secret" not in done.stderr
