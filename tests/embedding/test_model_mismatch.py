"""A collection keeps the model its vectors came from; vectors from any other model are refused.

The test writes a checkpoint directory with the shipped `embedding` plus `small`, a
randomly initialised 64-dimensional model, and later a directory where `embedding`
has other weights under the same name.
"""

from __future__ import annotations

import json
import shutil

import grpc
import pytest

from models.embedding.network import EmbeddingConfig, JointEmbedding
from models.embedding.tokenizer import SPECIALS
from models.shapesworld import VOCABULARY
from models.training import CHECKPOINT_DIR, read_manifest, save_checkpoint
from synesthesia.v1 import embedding_pb2
from tests.embedding.conftest import embed_texts, everything, stub_for, text_item
from tests.runtime.helpers import field_violations

E = embedding_pb2
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def random_checkpoint(name: str, directory, dim: int, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    config = EmbeddingConfig(vocabulary=SPECIALS + VOCABULARY, dim=dim)
    save_checkpoint(name, JointEmbedding(config), config={"model": config.to_dict(), "training": {}}, metrics={},
                    command="tests/embedding/test_model_mismatch.py", data_seeds={}, directory=directory)


def with_shipped_embedding(directory) -> None:
    shutil.copy(CHECKPOINT_DIR / "embedding.safetensors", directory / "embedding.safetensors")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["embedding"] = read_manifest()["embedding"]
    (directory / "manifest.json").write_text(json.dumps(manifest))


def refused(call, request, field: str, code=PRECONDITION) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    assert caught.value.code() == code, caught.value.details()
    assert field in [f for f, _ in field_violations(caught.value)]
    return caught.value.details()


@pytest.mark.slow
def test_vectors_of_another_model_or_other_weights_are_refused(service_process, tmp_path):
    checkpoints, index = tmp_path / "checkpoints", tmp_path / "index"
    checkpoints.mkdir()
    random_checkpoint("small", checkpoints, dim=64, seed=0)
    with_shipped_embedding(checkpoints)
    env = {"SYN_CHECKPOINT_DIR": str(checkpoints), "SYN_EMBEDDING_INDEX_DIR": str(index),
           "SYN_EMBEDDING_MODELS": "embedding,small"}
    server = service_process("embedding", env=env)
    channel, stub = stub_for(server.target)
    with channel:
        assert embed_texts(stub, ["a red circle"], model="small").shape == (1, 64)
        stub.Upsert(E.UpsertRequest(collection="big", items=[text_item("a", "a red circle")]), timeout=30)
        stub.Upsert(E.UpsertRequest(collection="tiny", model="small", items=[text_item("b", "a blue square")]),
                    timeout=30)
        assert stub.GetCollection(E.GetCollectionRequest(collection="tiny"), timeout=30).dimension == 64
        # Another model's (and dimension's) vectors into an existing collection: refused, nothing written.
        details = refused(stub.Upsert, E.UpsertRequest(collection="big", model="small",
                                                       items=[text_item("x", "a red circle")]), "model")
        assert "'embedding'" in details and "'small'" in details
        refused(stub.Upsert, E.UpsertRequest(collection="tiny", model="embedding", items=[text_item("x", "y")]),
                "model")
        assert set(everything(stub, "big")) == {"a"} and set(everything(stub, "tiny")) == {"b"}
        # Naming the collection's own model, or none, is fine; searches use the collection's model.
        stub.Upsert(E.UpsertRequest(collection="tiny", model="small", items=[text_item("c", "a green cross")]),
                    timeout=30)
        hits = stub.Search(E.SearchRequest(collection="tiny", text="a green cross", top_k=1), timeout=30).hits
        assert hits[0].id == "c" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    server.stop()

    # The same index on a server without `small`: its collection cannot be searched or extended.
    alone = service_process("embedding", env={**env, "SYN_EMBEDDING_MODELS": "embedding"})
    channel, stub = stub_for(alone.target)
    with channel:
        details = refused(stub.Search, E.SearchRequest(collection="tiny", text="a", top_k=1), "collection")
        assert "'small'" in details
        refused(stub.Upsert, E.UpsertRequest(collection="tiny", items=[text_item("d", "e")]), "collection")
        assert stub.GetCollection(E.GetCollectionRequest(collection="tiny"), timeout=30).model == "small"
        assert len(stub.Search(E.SearchRequest(collection="big", text="a", top_k=5), timeout=30).hits) == 1
    alone.stop()

    # Other weights under the same name: the fingerprint differs, so nothing is mixed into `big`.
    retrained = tmp_path / "retrained"
    retrained.mkdir()
    random_checkpoint("embedding", retrained, dim=128, seed=1)
    other = service_process("embedding", env={**env, "SYN_CHECKPOINT_DIR": str(retrained),
                                              "SYN_EMBEDDING_MODELS": "embedding"})
    channel, stub = stub_for(other.target)
    with channel:
        assert "re-index" in refused(stub.Search, E.SearchRequest(collection="big", text="a", top_k=1), "collection")
        refused(stub.Upsert, E.UpsertRequest(collection="big", items=[text_item("z", "a")]), "collection")
        # New collections are fine with the new weights.
        stub.Upsert(E.UpsertRequest(collection="fresh", items=[text_item("z", "a")]), timeout=30)
        assert stub.GetCollection(E.GetCollectionRequest(collection="big"), timeout=30).size == 1
