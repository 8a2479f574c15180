"""The collection RPCs behave the same on every store backend: one embedding service per backend
(FAISS directory, PostgreSQL database) answers the same calls with the same results and errors."""

from __future__ import annotations

import grpc
import pytest

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.v1 import embedding_pb2
from tests.embedding.conftest import BACKENDS, fresh_name, image_item, store_env, stub_for, text_item
from tests.runtime.helpers import field_violations

E = embedding_pb2
SCENES = [render_scene(seed) for seed in EVAL_SEEDS[43000:43012]]


@pytest.fixture(scope="module", params=BACKENDS)
def stub(request, shared_service, tmp_path_factory):
    if request.param == "postgres":
        import psycopg

        server = request.getfixturevalue("postgres_server")
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE service_collections")
        url = server.url.rsplit("/", 1)[0] + "/service_collections"
    else:
        url = str(tmp_path_factory.mktemp("service-collections"))
    channel, stub = stub_for(shared_service("embedding", store_env(url)).target)
    with channel:
        yield stub


def refused(call, request) -> tuple[grpc.StatusCode, list[str], str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    error = caught.value
    return error.code(), [f for f, _ in field_violations(error)], error.details()


def test_upsert_search_filter_delete_list_and_drop(stub):
    name = fresh_name("svc")
    items = [image_item(f"s{k}", s.image, colour=s.objects[0].colour, parity=str(k % 2))
             for k, s in enumerate(SCENES)]
    items.append(text_item("t0", SCENES[0].captions[0], colour="text", parity="0"))
    written = stub.Upsert(E.UpsertRequest(collection=name, items=items), timeout=60)
    assert (written.upserted_count, written.collection_size) == (13, 13)

    query = E.SearchRequest(collection=name, text=SCENES[0].captions[0], top_k=13)
    hits = stub.Search(query, timeout=30).hits
    assert len(hits) == 13 and hits[0].id == "t0" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    # The filter keeps the order of the unfiltered ranking, restricted to matching items.
    for where in ({"parity": "1"}, {"parity": "0", "colour": SCENES[2].objects[0].colour}, {"colour": "text"}):
        query.metadata_filter.clear()
        query.metadata_filter.update(where)
        filtered = stub.Search(query, timeout=30).hits
        expected = [h.id for h in hits if all(h.metadata[k] == v for k, v in where.items())]
        assert [h.id for h in filtered] == expected and expected
    query.metadata_filter.clear()
    query.metadata_filter["parity"] = "2"
    assert list(stub.Search(query, timeout=30).hits) == []

    deleted = stub.Delete(E.DeleteRequest(collection=name, ids=["s1", "s3", "absent"]), timeout=30)
    assert (deleted.deleted_count, deleted.collection_size) == (2, 11)
    described = stub.GetCollection(E.GetCollectionRequest(collection=name), timeout=30)
    assert (described.collection, described.size, described.dimension, described.model, described.index_kind) == (
        name, 11, 128, "embedding", "flat-ip")
    listed = {c.collection: c.size for c in stub.ListCollections(E.ListCollectionsRequest(), timeout=30).collections}
    assert listed[name] == 11

    dropped = stub.DropCollection(E.DropCollectionRequest(collection=name), timeout=30)
    assert dropped.dropped_size == 11
    assert name not in {c.collection for c in stub.ListCollections(E.ListCollectionsRequest(),
                                                                     timeout=30).collections}
    assert refused(stub.Search, E.SearchRequest(collection=name, text="a", top_k=1))[:2] == (
        grpc.StatusCode.NOT_FOUND, ["collection"])
    assert refused(stub.DropCollection, E.DropCollectionRequest(collection=name))[:2] == (
        grpc.StatusCode.NOT_FOUND, ["collection"])


@pytest.mark.parametrize("request_", [
    E.UpsertRequest(collection="name\n", items=[text_item("a", "b")]),
    E.SearchRequest(collection="name\n", text="a", top_k=1),
    E.DropCollectionRequest(collection="a/b"),
    E.GetCollectionRequest(collection="x" * 5000),
], ids=["upsert-newline", "search-newline", "drop-slash", "get-5000-chars"])
def test_bad_collection_names_are_refused_with_a_short_echo(stub, request_):
    method = {E.UpsertRequest: stub.Upsert, E.SearchRequest: stub.Search, E.DropCollectionRequest: stub.DropCollection,
              E.GetCollectionRequest: stub.GetCollection}[type(request_)]
    code, fields, details = refused(method, request_)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fields == ["collection"] and len(details) < 300


def test_filters_beyond_the_limits_are_refused(stub):
    name = fresh_name("svc")
    stub.Upsert(E.UpsertRequest(collection=name, items=[text_item("a", "a red circle")]), timeout=60)
    too_many = E.SearchRequest(collection=name, text="a", top_k=1, metadata_filter={str(k): "v" for k in range(17)})
    empty_key = E.SearchRequest(collection=name, text="a", top_k=1, metadata_filter={"": "v"})
    for request in (too_many, empty_key):
        code, fields, _ = refused(stub.Search, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and fields == ["metadata_filter"]
