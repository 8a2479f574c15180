"""The collection store interface, on every backend (FAISS + log, PostgreSQL + pgvector), through
public methods only: writes, replacement, deletion, metadata filters, restarts, concurrency, errors.

Backend-specific behaviour (the FAISS log and snapshots, PostgreSQL crashes) is in
test_faiss_log.py and test_postgres_store.py."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from services.embedding.store import (
    CollectionNotFound,
    DimensionMismatch,
    InvalidItems,
    StoreError,
)

DIM = 16
KINDS = ["flat-ip", "hnsw"]


def unit_vectors(count: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def contents(store, name: str) -> dict[str, tuple[np.ndarray, dict]]:
    return {item.id: (item.vector, item.metadata) for batch in store.items(name, batch_size=7) for item in batch}


@pytest.mark.parametrize("kind", KINDS)
def test_search_replace_delete(open_store, kind):
    store = open_store(index_kind=kind)
    info = store.create("things", "m", "fp", DIM)
    assert (info.name, info.model, info.fingerprint, info.dimension, info.index_kind) == ("things", "m", "fp", DIM,
                                                                                         kind)
    v = unit_vectors(50)
    assert store.upsert("things", [f"id{i}" for i in range(50)], v, [{"n": str(i)} for i in range(50)]) == (50, 50)
    top = store.search("things", v[7], 3)
    assert top[0].id == "id7" and top[0].score == pytest.approx(1.0, abs=1e-5) and top[0].metadata == {"n": "7"}
    assert [h.score for h in top] == sorted((h.score for h in top), reverse=True)
    # Replacing keeps the size, moves the vector, and the old vector is no longer found.
    assert store.upsert("things", ["id7"], v[8:9], [{"n": "new"}]) == (1, 50)
    hits = store.search("things", v[7], 50)
    assert all(h.score < 0.999 for h in hits) and len(hits) == 50
    assert {h.id for h in store.search("things", v[8], 2)} == {"id7", "id8"}
    assert store.delete("things", ["id8", "missing", "id8"]) == (1, 49)
    assert "id8" not in {h.id for h in store.search("things", v[8], 50)}
    # top_k beyond the size gives every item once.
    expected = sorted(set(f"id{i}" for i in range(50)) - {"id8"})
    assert sorted(h.id for h in store.search("things", v[0], 10_000)) == expected
    assert store.get("things").size == 49


def test_refuses_wrong_dimension_duplicate_ids_bad_names_and_unknown_collections(open_store):
    store = open_store()
    store.create("a", "m", "fp", DIM)
    with pytest.raises(DimensionMismatch):
        store.upsert("a", ["x"], np.ones((1, DIM + 1), np.float32))
    with pytest.raises(DimensionMismatch):
        store.search("a", np.ones(DIM + 1, np.float32), 1)
    with pytest.raises(InvalidItems):
        store.upsert("a", ["x", "x"], unit_vectors(2))
    with pytest.raises(InvalidItems):
        store.upsert("a", ["x"], np.full((1, DIM), np.nan, np.float32))
    # fullmatch: a trailing newline is not part of a name either.
    for name in ["", "a/b", "..", "x" * 65, "sp ace", "é", "a\n", "a\r\n", "\na"]:
        with pytest.raises(StoreError):
            store.create(name, "m", "fp", DIM)
    for call in (lambda: store.upsert("nope", ["x"], unit_vectors(1)), lambda: store.delete("nope", ["x"]),
                 lambda: store.search("nope", unit_vectors(1)[0], 1), lambda: list(store.items("nope"))):
        with pytest.raises(CollectionNotFound):
            call()
    assert store.get("nope") is None and store.get("a").size == 0 and [c.name for c in store.list()] == ["a"]


@pytest.mark.parametrize("kind", KINDS)
def test_metadata_filters_are_equality_on_every_given_key(open_store, kind):
    store = open_store(index_kind=kind)
    store.create("f", "m", "fp", DIM)
    v = unit_vectors(300, seed=3)
    colours = ["red", "green", "blue"]
    metadata = [{"colour": colours[i % 3], "shape": "circle" if i % 2 else "square", "i": str(i)} for i in range(300)]
    store.upsert("f", [f"id{i}" for i in range(300)], v, metadata)

    def exact(query, keep, k):
        scores = v @ query
        order = [i for i in np.argsort(-scores) if keep(i)]
        return [f"id{i}" for i in order[:k]]

    reds = store.search("f", v[0], 10, {"colour": "red"})
    assert [h.id for h in reds] == exact(v[0], lambda i: i % 3 == 0, 10)
    assert all(h.metadata["colour"] == "red" for h in reds)
    both = store.search("f", v[1], 5, {"colour": "green", "shape": "circle"})
    assert [h.id for h in both] == exact(v[1], lambda i: i % 3 == 1 and i % 2 == 1, 5)
    # A filter that matches fewer items than top_k returns just those; one that matches none, nothing.
    assert [h.id for h in store.search("f", v[5], 10, {"i": "5"})] == ["id5"]
    assert store.search("f", v[5], 10, {"colour": "purple"}) == []
    assert store.search("f", v[5], 10, {"colour": "red", "i": "5"}) == []  # 5 is not red
    # Replacing an item's metadata moves it between filters; a deleted item matches none.
    store.upsert("f", ["id0"], v[0:1], [{"colour": "purple"}])
    assert [h.id for h in store.search("f", v[0], 3, {"colour": "purple"})] == ["id0"]
    assert "id0" not in {h.id for h in store.search("f", v[0], 300, {"colour": "red"})}
    store.delete("f", ["id0"])
    assert store.search("f", v[0], 3, {"colour": "purple"}) == []
    # Values are compared as strings, exactly.
    assert store.search("f", v[5], 3, {"i": "05"}) == [] and store.search("f", v[5], 3, {"I": "5"}) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_reopened_store_serves_every_write(open_store, kind):
    """A second store on the same location without closing the first: what a restart after a crash sees."""
    store = open_store(index_kind=kind, snapshot_every=3)
    store.create("a", "model-x", "fp1", DIM)
    v = unit_vectors(20)
    for i in range(20):
        store.upsert("a", [f"id{i}"], v[i:i + 1], [{"i": str(i)}])
    store.upsert("a", ["id3"], v[4:5], [{"i": "replaced"}])
    store.delete("a", ["id5", "id6"])
    expected = contents(store, "a")
    reopened = open_store(index_kind="hnsw" if kind == "flat-ip" else "flat-ip")
    assert reopened.get("a") == store.get("a") and reopened.get("a").index_kind == kind  # its own kind
    got = contents(reopened, "a")
    assert got.keys() == expected.keys() and len(got) == 18
    for key in got:
        np.testing.assert_array_equal(got[key][0], expected[key][0])
        assert got[key][1] == expected[key][1]
    assert got["id3"][1] == {"i": "replaced"}
    assert reopened.search("a", v[4], 2)[0].metadata in ({"i": "replaced"}, {"i": "4"})


def test_list_get_create_and_drop(open_store):
    store = open_store()
    first = store.create("one", "m1", "f1", DIM)
    # Creating an existing collection returns it unchanged: the first creator wins.
    assert store.create("one", "m2", "f2", 8) == first
    store.create("two", "m2", "f2", 8, index_kind="hnsw")
    store.upsert("one", ["x", "y"], unit_vectors(2))
    assert [(c.name, c.model, c.dimension, c.index_kind, c.size) for c in store.list()] == [
        ("one", "m1", DIM, "flat-ip", 2), ("two", "m2", 8, "hnsw", 0)]
    assert store.drop("one") and not store.drop("one") and store.get("one") is None
    with pytest.raises(CollectionNotFound):
        store.search("one", unit_vectors(1)[0], 1)
    # The name is free again, for another model and dimension.
    store.create("one", "m3", "f3", 4)
    assert store.get("one").size == 0 and store.get("one").dimension == 4
    reopened = open_store()
    assert [(c.name, c.model) for c in reopened.list()] == [("one", "m3"), ("two", "m2")]


def test_items_gives_back_every_vector_in_batches(open_store):
    store = open_store()
    store.create("a", "m", "fp", DIM)
    v = unit_vectors(40, seed=5)
    store.upsert("a", [f"k{i:02d}" for i in range(40)], v, [{"i": str(i)} for i in range(40)])
    batches = list(store.items("a", batch_size=16))
    assert [len(b) for b in batches] == [16, 16, 8]
    got = {item.id: item for batch in batches for item in batch}
    assert len(got) == 40
    for i in range(40):
        np.testing.assert_allclose(got[f"k{i:02d}"].vector, v[i], atol=1e-6)
        assert got[f"k{i:02d}"].metadata == {"i": str(i)}


@pytest.mark.parametrize("kind", KINDS)
def test_one_item_by_id_follows_replacement_and_deletion(open_store, kind):
    store = open_store(index_kind=kind)
    store.create("a", "m", "fp", DIM)
    v = unit_vectors(12, seed=6)
    store.upsert("a", [f"k{i}" for i in range(12)], v, [{"i": str(i)} for i in range(12)])
    found = store.item("a", "k4")
    assert found.id == "k4" and found.metadata == {"i": "4"}
    np.testing.assert_allclose(found.vector, v[4], atol=1e-6)
    store.upsert("a", ["k4"], v[9:10], [{"i": "new"}])
    np.testing.assert_allclose(store.item("a", "k4").vector, v[9], atol=1e-6)
    assert store.item("a", "k4").metadata == {"i": "new"}
    store.delete("a", ["k4"])
    assert store.item("a", "k4") is None and store.item("a", "never") is None
    with pytest.raises(CollectionNotFound):
        store.item("nope", "k1")


def test_concurrent_writers_lose_nothing(open_store):
    store = open_store(snapshot_every=5)
    store.create("a", "m", "fp", DIM)
    v = unit_vectors(160)
    errors = []

    def writer(w: int) -> None:
        try:
            for i in range(20):
                k = w * 20 + i
                store.upsert("a", [f"w{w}-{i}", "shared"], v[[k, w]], [{"w": str(w)}, {"w": str(w)}])
                store.search("a", v[k], 3)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert store.get("a").size == 161  # 160 own ids plus the one they all replace
    assert len(contents(open_store(), "a")) == 161
