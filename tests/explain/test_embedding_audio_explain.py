"""ExplainMatch, ItemNeighbors, MapCollection (embedding) and ExplainLocalization (audio) over loopback."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.tensors import array_to_pcm, from_tensor
from synesthesia.v1 import common_pb2, embedding_pb2, explain_pb2
from tests.explain.conftest import decode_png, png, violations

E = explain_pb2
SCENE = render_scene(EVAL_SEEDS.start + 900_011, objects=2)


def phrase(obj) -> str:
    return f"a {obj.size} {obj.colour} {obj.shape}"


def test_a_match_is_explained_and_the_similarity_is_the_embedding_cosine(embedding):
    methods = [E.EXPLAIN_METHOD_GRAD_CAM, E.EXPLAIN_METHOD_OCCLUSION, E.EXPLAIN_METHOD_GRADIENT]
    text = phrase(SCENE.objects[0])
    answer = embedding.ExplainMatch(E.ExplainMatchRequest(image=common_pb2.Image(data=png(SCENE.image)), text=text,
                                                          methods=methods), timeout=120)
    image_vec = from_tensor(embedding.EmbedImages(embedding_pb2.EmbedImagesRequest(
        images=[common_pb2.Image(data=png(SCENE.image))]), timeout=60).embeddings)[0]
    text_vec = from_tensor(embedding.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=[text]), timeout=60).embeddings)[0]
    assert answer.similarity == pytest.approx(float(image_vec @ text_vec), abs=1e-3)
    assert [e.method for e in answer.explanations] == methods and answer.model == "embedding"
    for e in answer.explanations:
        assert from_tensor(e.heatmap.values).shape == (64, 64)
        assert decode_png(e.overlay_png).shape == (64, 64, 3)
    with pytest.raises(grpc.RpcError) as caught:
        embedding.ExplainMatch(E.ExplainMatchRequest(image=common_pb2.Image(data=png(SCENE.image)), text=text,
                                                     methods=[E.EXPLAIN_METHOD_ATTENTION]), timeout=60)
    assert "methods[0]" in violations(caught.value)
    with pytest.raises(grpc.RpcError) as caught:
        embedding.ExplainMatch(E.ExplainMatchRequest(image=common_pb2.Image(data=b"not an image"), text=text,
                                                     methods=[E.EXPLAIN_METHOD_GRAD_CAM]), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "image.data" in violations(caught.value)


@pytest.fixture(scope="module")
def collection(embedding):
    scenes = [render_scene(EVAL_SEEDS.start + 900_100 + i, objects=1) for i in range(24)]
    items = [embedding_pb2.Item(id=f"s{i:02d}", image=common_pb2.Image(data=png(s.image)),
                                metadata={"shape": s.objects[0].shape, "colour": s.objects[0].colour})
             for i, s in enumerate(scenes)]
    embedding.Upsert(embedding_pb2.UpsertRequest(collection="explain-map", items=items), timeout=120)
    return scenes


def test_item_neighbours_exclude_the_item_and_match_search(embedding, collection):
    answer = embedding.ItemNeighbors(E.ItemNeighborsRequest(collection="explain-map", id="s03", top_k=5), timeout=60)
    assert len(answer.neighbors) == 5 and all(n.id != "s03" for n in answer.neighbors)
    scores = [n.score for n in answer.neighbors]
    assert scores == sorted(scores, reverse=True)
    search = embedding.Search(embedding_pb2.SearchRequest(
        collection="explain-map", image=common_pb2.Image(data=png(collection[3].image)), top_k=6), timeout=60)
    assert [h.id for h in search.hits if h.id != "s03"][:5] == [n.id for n in answer.neighbors]
    with pytest.raises(grpc.RpcError) as caught:
        embedding.ItemNeighbors(E.ItemNeighborsRequest(collection="explain-map", id="nope"), timeout=60)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and "id" in violations(caught.value)


def test_a_tsne_map_has_a_point_per_item_labelled_and_is_seeded(embedding, collection):
    request = E.MapCollectionRequest(collection="explain-map", label_key="shape", seed=7)
    answer = embedding.MapCollection(request, timeout=120)
    assert [p.id for p in answer.points] == [f"s{i:02d}" for i in range(24)] and answer.method == "tsne"
    assert [p.label for p in answer.points] == [s.objects[0].shape for s in collection]
    assert decode_png(answer.picture_png).shape == (512, 512, 3)
    xy = np.array([(p.x, p.y) for p in answer.points])
    assert np.isfinite(xy).all() and np.ptp(xy, axis=0).min() > 0
    again = embedding.MapCollection(request, timeout=120)
    assert np.allclose(xy, np.array([(p.x, p.y) for p in again.points]))
    with pytest.raises(grpc.RpcError) as caught:
        embedding.MapCollection(E.MapCollectionRequest(collection="explain-map", max_items=10**6), timeout=60)
    assert "SYN_EXPLAIN_MAX_POINTS" in caught.value.details() and "max_items" in violations(caught.value)


def test_a_umap_map_is_seeded_and_keeps_neighbours_together(embedding, collection):
    request = E.MapCollectionRequest(collection="explain-map", label_key="shape", seed=3, method=E.MAP_METHOD_UMAP,
                                     umap_neighbors=5)
    answer = embedding.MapCollection(request, timeout=180)  # the first call compiles umap-learn's numba code
    assert answer.method == "umap" and [p.id for p in answer.points] == [f"s{i:02d}" for i in range(24)]
    xy = np.array([(p.x, p.y) for p in answer.points])
    assert np.isfinite(xy).all() and np.ptp(xy, axis=0).min() > 0
    assert np.allclose(xy, np.array([(p.x, p.y) for p in embedding.MapCollection(request, timeout=120).points]))
    # A map keeps what the embedding finds close: each item's nearest map point is one of its embedding
    # neighbours far more often than chance (5 of 23 others).
    vectors = {}
    for item_id in (p.id for p in answer.points):
        near = embedding.ItemNeighbors(E.ItemNeighborsRequest(collection="explain-map", id=item_id, top_k=5),
                                       timeout=60)
        vectors[item_id] = {n.id for n in near.neighbors}
    ids = [p.id for p in answer.points]
    distance = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy)) * 1e9
    kept = np.mean([ids[int(distance[i].argmin())] in vectors[ids[i]] for i in range(len(ids))])
    assert kept > 0.5, kept
    for bad, field in ((E.MapCollectionRequest(collection="explain-map", method=E.MAP_METHOD_UMAP,
                                               umap_neighbors=24), "umap_neighbors"),
                       (E.MapCollectionRequest(collection="explain-map", method=99), "method")):
        with pytest.raises(grpc.RpcError) as caught:
            embedding.MapCollection(bad, timeout=60)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in violations(caught.value)


def test_the_sound_score_is_explained(audio):
    scene = render_scene(EVAL_SEEDS.start + 900_021, objects=2)
    clip = common_pb2.AudioClip(pcm=common_pb2.Pcm(samples_f32le=array_to_pcm(scene.audio), sample_rate_hz=16000))
    methods = [E.EXPLAIN_METHOD_GRAD_CAM, E.EXPLAIN_METHOD_OCCLUSION, E.EXPLAIN_METHOD_GUIDED_BACKPROP]
    answer = audio.ExplainLocalization(E.ExplainLocalizationRequest(
        image=common_pb2.Image(data=png(scene.image)), audio=clip, methods=methods), timeout=120)
    assert -1 <= answer.score <= 1 and answer.model == "localization"
    assert [e.method for e in answer.explanations] == methods
    for e in answer.explanations:
        assert from_tensor(e.heatmap.values).shape == (64, 64)
    with pytest.raises(grpc.RpcError) as caught:
        audio.ExplainLocalization(E.ExplainLocalizationRequest(
            image=common_pb2.Image(data=png(scene.image)), audio=common_pb2.AudioClip(),
            methods=[E.EXPLAIN_METHOD_GRAD_CAM]), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "audio" in violations(caught.value)
