"""Retrieval quality through the service on 1,000 held-out pairs, at the targets, both ways.

1,000 held-out scenes (EVAL_SEEDS, the pairs the manifest's numbers come from) are
upserted over gRPC as images into one collection and their canonical captions as
texts into another; then every caption searches the images and every image searches
the captions. A hit is an item whose scene's reference captions include the query's
caption (text->image), or a caption among the query scene's references (image->text):
templated captions repeat, so several items can be right. The single-object scenes
are also indexed alone. The service's numbers must also equal the in-process
evaluation's: the service adds no error of its own.
"""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

from models.embedding import evaluate
from models.embedding.checkpoint import load_embedder
from synesthesia.v1 import embedding_pb2
from tests.embedding.conftest import image, image_item, text_item

pytestmark = pytest.mark.slow
E = embedding_pb2
PAIRS = 1000


@pytest.fixture(scope="module")
def pairs():
    return evaluate.eval_pairs(PAIRS)


def pixels_of(pairs, i: int) -> np.ndarray:
    return (pairs.images[i].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def upsert_all(stub, collection: str, items: list) -> None:
    for start in range(0, len(items), 125):
        stub.Upsert(E.UpsertRequest(collection=collection, items=items[start:start + 125]), timeout=120)
    assert stub.GetCollection(E.GetCollectionRequest(collection=collection), timeout=30).size == len(items)


def ranks(stub, collection: str, queries: list, relevant) -> np.ndarray:
    """Rank (0-based) of the first relevant hit per query; 10 when none in the top 10."""
    def one(q):
        index, request = q
        hits = stub.Search(request, timeout=60).hits
        return next((r for r, h in enumerate(hits) if relevant(index, h)), 10)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return np.array(list(pool.map(one, queries)))


def served_recall(stub, pairs, subset: list[int], tag: str) -> dict[str, float]:
    refs = pairs.references
    upsert_all(stub, f"quality-images-{tag}", [
        image_item(str(i), pixels_of(pairs, i), references="|".join(refs[i])) for i in subset])
    upsert_all(stub, f"quality-texts-{tag}", [text_item(str(i), refs[i][0]) for i in subset])
    t2i = ranks(stub, f"quality-images-{tag}",
                [(i, E.SearchRequest(collection=f"quality-images-{tag}", text=refs[i][0], top_k=10)) for i in subset],
                lambda i, hit: refs[i][0] in hit.metadata["references"].split("|"))
    i2t = ranks(stub, f"quality-texts-{tag}",
                [(i, E.SearchRequest(collection=f"quality-texts-{tag}", image=image(pixels_of(pairs, i)), top_k=10))
                 for i in subset],
                lambda i, hit: refs[int(hit.id)][0] in refs[i])
    return {f"{d}_recall@{k}": float((r < k).mean()) for d, r in (("t2i", t2i), ("i2t", i2t)) for k in (1, 5, 10)}


def test_recall_through_the_service_meets_the_targets(embedding_stub, pairs):
    every = list(range(PAIRS))
    served = served_recall(embedding_stub, pairs, every, "all")
    print("served:", served)
    for direction in ("t2i", "i2t"):
        assert served[f"{direction}_recall@1"] >= 0.5
        assert served[f"{direction}_recall@10"] >= 0.9
        assert served[f"{direction}_recall@10"] >= served[f"{direction}_recall@5"] >= served[f"{direction}_recall@1"]

    single = [i for i in every if pairs.num_objects[i] == 1]
    assert 400 <= len(single) <= 600
    served_single = served_recall(embedding_stub, pairs, single, "single")
    print("served, single-object scenes:", served_single)
    assert served_single["t2i_recall@5"] >= 0.95 and served_single["i2t_recall@5"] >= 0.95

    # Same numbers as the model in-process (ties between equal scores may order differently).
    local = evaluate.evaluate(load_embedder().model, pairs)
    for key, value in served.items():
        assert value == pytest.approx(local[key], abs=0.01), key
        # ... and far above chance.
        assert value > 5 * local[key.replace("recall", "chance")]
    for key, value in served_single.items():
        assert value == pytest.approx(local[f"single_{key}"], abs=0.01), key
