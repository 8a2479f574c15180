"""Every kind of bad input gets its own status naming the field, and the server keeps serving."""

from __future__ import annotations

import grpc
import pytest

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.v1 import common_pb2, embedding_pb2
from tests.embedding.conftest import embed_texts, fresh_name, png, text_item
from tests.runtime.helpers import field_violations, png_declaring

INVALID, NOT_FOUND, EXHAUSTED, PRECONDITION = (
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION)
GOOD = png(render_scene(EVAL_SEEDS[41000]).image)
EXISTING = "bad-inputs-existing"
E = embedding_pb2


def img(data: bytes) -> common_pb2.Image:
    return common_pb2.Image(data=data)


CASES = {
    # EmbedTexts
    "no texts": ("EmbedTexts", E.EmbedTextsRequest(), INVALID, "texts"),
    "257 texts": ("EmbedTexts", E.EmbedTextsRequest(texts=["a"] * 257), INVALID, "texts"),
    "empty text": ("EmbedTexts", E.EmbedTextsRequest(texts=["a red circle", ""]), INVALID, "texts[1]"),
    "blank text": ("EmbedTexts", E.EmbedTextsRequest(texts=["   "]), INVALID, "texts[0]"),
    "513 characters": ("EmbedTexts", E.EmbedTextsRequest(texts=["a" * 513]), INVALID, "texts[0]"),
    "unknown text model": ("EmbedTexts", E.EmbedTextsRequest(texts=["a"], model="nope"), NOT_FOUND, "model"),
    # EmbedImages
    "no images": ("EmbedImages", E.EmbedImagesRequest(), INVALID, "images"),
    "corrupt image": ("EmbedImages", E.EmbedImagesRequest(images=[img(GOOD), img(b"not an image")]), INVALID,
                      "images[1].data"),
    "empty image": ("EmbedImages", E.EmbedImagesRequest(images=[img(b"")]), INVALID, "images[0].data"),
    "truncated png": ("EmbedImages", E.EmbedImagesRequest(images=[img(GOOD[: len(GOOD) // 2])]), INVALID,
                      "images[0].data"),
    "huge declared canvas": ("EmbedImages", E.EmbedImagesRequest(images=[img(png_declaring(100_000, 100_000))]),
                             EXHAUSTED, "images[0].data"),
    "unknown image model": ("EmbedImages", E.EmbedImagesRequest(images=[img(GOOD)], model="nope"), NOT_FOUND,
                            "model"),
    # Upsert
    "bad collection name": ("Upsert", E.UpsertRequest(collection="../etc", items=[text_item("a", "b")]), INVALID,
                            "collection"),
    "empty collection name": ("Upsert", E.UpsertRequest(items=[text_item("a", "b")]), INVALID, "collection"),
    "65-character name": ("Upsert", E.UpsertRequest(collection="x" * 65, items=[text_item("a", "b")]), INVALID,
                          "collection"),
    "no items": ("Upsert", E.UpsertRequest(collection=EXISTING), INVALID, "items"),
    "empty id": ("Upsert", E.UpsertRequest(collection=EXISTING, items=[text_item("", "b")]), INVALID, "items[0].id"),
    "long id": ("Upsert", E.UpsertRequest(collection=EXISTING, items=[text_item("i" * 257, "b")]), INVALID,
                "items[0].id"),
    "duplicate ids": ("Upsert", E.UpsertRequest(collection=EXISTING, items=[text_item("a", "b"), text_item("a", "c")]),
                      INVALID, "items[1].id"),
    "no content": ("Upsert", E.UpsertRequest(collection=EXISTING, items=[E.Item(id="a")]), INVALID,
                   "items[0].content"),
    "empty item text": ("Upsert", E.UpsertRequest(collection=EXISTING, items=[text_item("a", "")]), INVALID,
                        "items[0].text"),
    "corrupt item image": ("Upsert", E.UpsertRequest(collection=EXISTING, items=[
        text_item("a", "b"), E.Item(id="c", image=img(b"\x89PNG garbage"))]), INVALID, "items[1].image.data"),
    "unknown upsert model": ("Upsert", E.UpsertRequest(collection="never-made", items=[text_item("a", "b")],
                                                       model="nope"), NOT_FOUND, "model"),
    "other model than the collection's": ("Upsert", E.UpsertRequest(collection=EXISTING, items=[text_item("a", "b")],
                                                                    model="clip"), PRECONDITION, "model"),
    # Search
    "missing collection": ("Search", E.SearchRequest(collection="no-such", text="a", top_k=1), NOT_FOUND,
                           "collection"),
    "bad search name": ("Search", E.SearchRequest(collection="a b", text="a", top_k=1), INVALID, "collection"),
    "top_k 0": ("Search", E.SearchRequest(collection=EXISTING, text="a", top_k=0), INVALID, "top_k"),
    "top_k negative": ("Search", E.SearchRequest(collection=EXISTING, text="a", top_k=-5), INVALID, "top_k"),
    "top_k 10001": ("Search", E.SearchRequest(collection=EXISTING, text="a", top_k=10_001), INVALID, "top_k"),
    "no query": ("Search", E.SearchRequest(collection=EXISTING, top_k=1), INVALID, "query"),
    "empty query text": ("Search", E.SearchRequest(collection=EXISTING, text="", top_k=1), INVALID, "text"),
    "corrupt query image": ("Search", E.SearchRequest(collection=EXISTING, image=img(b"nope"), top_k=1), INVALID,
                            "image.data"),
    # Delete, GetCollection
    "delete from missing": ("Delete", E.DeleteRequest(collection="no-such", ids=["a"]), NOT_FOUND, "collection"),
    "delete nothing": ("Delete", E.DeleteRequest(collection=EXISTING), INVALID, "ids"),
    "describe missing": ("GetCollection", E.GetCollectionRequest(collection="no-such"), NOT_FOUND, "collection"),
    "describe bad name": ("GetCollection", E.GetCollectionRequest(collection="é"), INVALID, "collection"),
}


@pytest.fixture(scope="module", autouse=True)
def existing(embedding_stub):
    embedding_stub.Upsert(E.UpsertRequest(collection=EXISTING, items=[text_item("keep", "a red circle")]), timeout=60)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_names_its_field_and_the_server_keeps_serving(embedding_stub, name):
    method, request, code, field = CASES[name]
    with pytest.raises(grpc.RpcError) as caught:
        getattr(embedding_stub, method)(request, timeout=30)
    assert caught.value.code() == code, caught.value.details()
    assert field in [f for f, _ in field_violations(caught.value)], caught.value.details()
    assert field in caught.value.details()
    # Nothing was written by the refused call, and the next good calls succeed.
    assert embedding_stub.GetCollection(E.GetCollectionRequest(collection=EXISTING), timeout=30).size == 1
    assert embed_texts(embedding_stub, ["a red circle"]).shape == (1, 128)
    hits = embedding_stub.Search(E.SearchRequest(collection=EXISTING, text="a red circle", top_k=1), timeout=30).hits
    assert [h.id for h in hits] == ["keep"]


def test_an_empty_collection_answers_with_no_hits(embedding_stub):
    name = fresh_name("emptied")
    embedding_stub.Upsert(E.UpsertRequest(collection=name, items=[text_item("only", "a blue square")]), timeout=60)
    reply = embedding_stub.Delete(E.DeleteRequest(collection=name, ids=["only", "never-there"]), timeout=30)
    assert (reply.deleted_count, reply.collection_size) == (1, 0)
    assert list(embedding_stub.Search(E.SearchRequest(collection=name, text="a blue square", top_k=10_000),
                                      timeout=30).hits) == []
    described = embedding_stub.GetCollection(E.GetCollectionRequest(collection=name), timeout=30)
    assert (described.size, described.dimension, described.model, described.index_kind) == (0, 128, "embedding",
                                                                                            "flat-ip")


def test_edges_of_the_ranges_are_accepted(embedding_stub):
    name = fresh_name("edges")
    items = [text_item(f"{i:0256d}", "a" * 512, k="v" * 100) for i in range(256)]
    reply = embedding_stub.Upsert(E.UpsertRequest(collection=name, items=items), timeout=120)
    assert (reply.upserted_count, reply.collection_size) == (256, 256)
    hits = embedding_stub.Search(E.SearchRequest(collection=name, text="a", top_k=10_000), timeout=60).hits
    assert len(hits) == 256 and len({h.id for h in hits}) == 256
    assert len(embedding_stub.Search(E.SearchRequest(collection=name, text="a", top_k=1), timeout=60).hits) == 1
    long_name = "n" * 64
    embedding_stub.Upsert(E.UpsertRequest(collection=long_name, items=[text_item("i", "t")]), timeout=60)
    assert embedding_stub.GetCollection(E.GetCollectionRequest(collection=long_name), timeout=30).size == 1
