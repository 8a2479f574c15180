"""Explanations of Hugging Face backends through the real Captioning and Embedding services.

Tiny random models are saved in each family's real on-disk format (tests/tiny_hf.py) behind
`<name>.model.yaml` entries, beside the built-in checkpoints (the defaults). Each method that applies must
answer a finite map at the model's input size with an overlay at the image's size, and the score explained
must be the served one (the word's log-probability Caption reports, the cosine of EmbedImages and
EmbedTexts); each method that does not apply must be refused with FAILED_PRECONDITION naming the method
and the model. The embedding server runs without umap-learn (a module on its path that fails to import,
as on a machine where it is not installed): MapCollection by UMAP is refused naming `method`.
"""

from __future__ import annotations

import os

import grpc
import numpy as np
import pytest

from models.shapesworld import EVAL_SEEDS, render_scene
from models.training import CHECKPOINT_DIR
from synesthesia.tensors import from_tensor
from synesthesia.v1 import (
    captioning_pb2,
    captioning_pb2_grpc,
    common_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    explain_pb2,
)
from tests import tiny_hf
from tests.explain.conftest import OPTIONS, decode_png, png, violations

pytestmark = pytest.mark.slow
E = explain_pb2
SCENE = render_scene(EVAL_SEEDS.start + 900_031, objects=2)
IMAGE = np.ascontiguousarray(SCENE.image[:, 8:56])  # 64x48: the overlay keeps the caller's size
ALWAYS = [E.EXPLAIN_METHOD_GRAD_CAM, E.EXPLAIN_METHOD_GRADIENT, E.EXPLAIN_METHOD_GRADIENT_SQUARED,
          E.EXPLAIN_METHOD_OCCLUSION]
ROLLOUT = E.EXPLAIN_METHOD_ATTENTION_ROLLOUT
CAPTIONERS = {  # entry name -> (builder, whether its vision tower has global self-attention to roll out)
    "tiny-vit": (lambda d: tiny_hf.vision_encoder_decoder(d, "vit"), True),
    "tiny-deit": (lambda d: tiny_hf.vision_encoder_decoder(d, "deit"), True),
    "tiny-donut": (lambda d: tiny_hf.vision_encoder_decoder(d, "swin"), False),
    "tiny-blip": (tiny_hf.blip, True),
    "tiny-git": (tiny_hf.git, True),
}
EMBEDDERS = {"tiny-clip": ("clip", True), "tiny-siglip": ("siglip", True), "tiny-align": ("align", False)}


def service(module: str, repository, tmp_path_factory, env: dict | None = None):
    from tests.servers import ServiceProcess

    return ServiceProcess(module, {"SYN_MODEL_REPOSITORY": str(repository), **(env or {})},
                          tmp_path_factory.mktemp("logs")).start(timeout_s=400)


@pytest.fixture(scope="module")
def captioning(tmp_path_factory):
    root = tmp_path_factory.mktemp("repository")
    for name, (build, _) in CAPTIONERS.items():
        tiny_hf.entry(root, name, "captioning", build(root / "weights" / name))
    tiny_hf.entry(root, "captioning", "captioning", CHECKPOINT_DIR / "captioning.safetensors", family="builtin",
                  default=True)
    server = service("services.captioning", root, tmp_path_factory)
    try:
        with grpc.insecure_channel(server.target, options=OPTIONS) as channel:
            yield captioning_pb2_grpc.CaptioningStub(channel)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def embedding(tmp_path_factory):
    root = tmp_path_factory.mktemp("repository")
    for name, (kind, _) in EMBEDDERS.items():
        tiny_hf.entry(root, name, "image-text-embedding", tiny_hf.dual_encoder(root / "weights" / name, kind))
    tiny_hf.entry(root, "tiny-siglip2", "image-text-embedding",
                  tiny_hf.dual_encoder(root / "weights" / "tiny-siglip2", "siglip2"))
    tiny_hf.entry(root, "embedding", "image-text-embedding", CHECKPOINT_DIR / "embedding.safetensors",
                  family="builtin", default=True)
    no_umap = tmp_path_factory.mktemp("no-umap")
    (no_umap / "umap.py").write_text('raise ImportError("No module named \'umap\'")\n')
    server = service("services.embedding", root, tmp_path_factory,
                     {"SYN_EMBEDDING_INDEX_DIR": str(tmp_path_factory.mktemp("index")), "PYTHONPATH": os.pathsep.join(filter(None, [str(no_umap), os.environ.get("PYTHONPATH")]))})
    try:
        with grpc.insecure_channel(server.target, options=OPTIONS) as channel:
            yield embedding_pb2_grpc.EmbeddingStub(channel)
    finally:
        server.stop()


def check_maps(explanations, methods, size: int = 32) -> None:
    assert [e.method for e in explanations] == methods
    for e in explanations:
        heat = from_tensor(e.heatmap.values)
        assert heat.shape == (size, size) and np.isfinite(heat).all(), E.ExplainMethod.Name(e.method)
        assert (e.heatmap.image_height_px, e.heatmap.image_width_px) == IMAGE.shape[:2]
        assert decode_png(e.overlay_png).shape == IMAGE.shape


def refused(call, request, field: str) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=120)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, caught.value.details()
    assert field in violations(caught.value), violations(caught.value)
    return caught.value.details()


@pytest.mark.parametrize("name", CAPTIONERS)
def test_a_caption_word_of_each_hf_captioner_is_explained(captioning, name):
    rolls = CAPTIONERS[name][1]
    served = captioning.Caption(captioning_pb2.CaptionRequest(
        image=common_pb2.Image(data=png(IMAGE)), options=captioning_pb2.CaptionOptions(beam_size=1, model=name)),
        timeout=120)
    words = [w.text for w in served.words]
    index = len(words) - 1
    methods = [*ALWAYS, E.EXPLAIN_METHOD_ATTENTION, *([ROLLOUT] if rolls else [])]
    answer = captioning.ExplainCaption(E.ExplainCaptionRequest(
        image=common_pb2.Image(data=png(IMAGE)), word_index=index, methods=methods, model=name,
        options=E.ExplainOptions(occlusion_window_px=8, occlusion_stride_px=8)), timeout=300)
    # The model's own caption, and the word's log-probability exactly as Caption scored it.
    assert answer.caption == served.caption and answer.word == words[index] and answer.model == name
    assert answer.log_probability == pytest.approx(served.words[index].log_probability, abs=1e-3)
    check_maps(answer.explanations, methods)
    attention = from_tensor(answer.explanations[4].heatmap.values)
    assert attention.min() >= 0 and attention.max() > 0
    if rolls:  # a convex mix of patch attention: non-negative, not all zero
        rollout = from_tensor(answer.explanations[5].heatmap.values)
        assert rollout.min() >= 0 and rollout.max() > 0
    for method, field in (([E.EXPLAIN_METHOD_GUIDED_BACKPROP], "methods[0]"),
                          ([E.EXPLAIN_METHOD_GRAD_CAM, E.EXPLAIN_METHOD_GUIDED_GRAD_CAM], "methods[1]"),
                          *((([ROLLOUT], "methods[0]"),) if not rolls else ())):
        details = refused(captioning.ExplainCaption, E.ExplainCaptionRequest(
            image=common_pb2.Image(data=png(IMAGE)), caption=answer.caption, word_index=0, methods=method,
            model=name), field)
        assert name in details and E.ExplainMethod.Name(method[-1]).removeprefix("EXPLAIN_METHOD_") in details


def test_a_given_caption_is_teacher_forced_and_bad_indexes_are_named(captioning):
    caption = "a small red circle"
    answer = captioning.ExplainCaption(E.ExplainCaptionRequest(
        image=common_pb2.Image(data=png(IMAGE)), caption=caption, word_index=2, model="tiny-vit",
        methods=[E.EXPLAIN_METHOD_GRADIENT, E.EXPLAIN_METHOD_OCCLUSION]), timeout=120)
    assert (answer.caption, answer.word) == (caption, "red") and answer.log_probability < 0
    # Default occlusion on a 32 px input: a 4 px window every 2 px (an eighth and a sixteenth of the side).
    check_maps(answer.explanations, [E.EXPLAIN_METHOD_GRADIENT, E.EXPLAIN_METHOD_OCCLUSION])
    with pytest.raises(grpc.RpcError) as caught:
        captioning.ExplainCaption(E.ExplainCaptionRequest(image=common_pb2.Image(data=png(IMAGE)), caption=caption,
                                                          word_index=4, model="tiny-vit",
                                                          methods=[E.EXPLAIN_METHOD_GRADIENT]), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "word_index" in violations(caught.value)
    # The built-in captioner has no ViT to roll out.
    details = refused(captioning.ExplainCaption, E.ExplainCaptionRequest(
        image=common_pb2.Image(data=png(SCENE.image)), word_index=0, methods=[ROLLOUT]), "methods[0]")
    assert "'captioning'" in details


@pytest.mark.parametrize("name", EMBEDDERS)
def test_a_match_of_each_hf_dual_encoder_is_explained(embedding, name):
    rolls = EMBEDDERS[name][1]
    text = "a small red circle"
    methods = [*ALWAYS, *([ROLLOUT] if rolls else [])]
    answer = embedding.ExplainMatch(E.ExplainMatchRequest(
        image=common_pb2.Image(data=png(IMAGE)), text=text, methods=methods, model=name,
        options=E.ExplainOptions(occlusion_window_px=8, occlusion_stride_px=8)), timeout=300)
    image_vec = from_tensor(embedding.EmbedImages(embedding_pb2.EmbedImagesRequest(
        images=[common_pb2.Image(data=png(IMAGE))], model=name), timeout=60).embeddings)[0]
    text_vec = from_tensor(embedding.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=[text], model=name),
                                                timeout=60).embeddings)[0]
    assert answer.model == name and answer.similarity == pytest.approx(float(image_vec @ text_vec), abs=1e-4)
    check_maps(answer.explanations, methods)
    if rolls:
        rollout = from_tensor(answer.explanations[-1].heatmap.values)
        assert rollout.min() >= 0 and rollout.max() > 0
    for method in ([E.EXPLAIN_METHOD_GUIDED_BACKPROP], *(([ROLLOUT],) if not rolls else ())):
        details = refused(embedding.ExplainMatch, E.ExplainMatchRequest(
            image=common_pb2.Image(data=png(IMAGE)), text=text, methods=method, model=name), "methods[0]")
        assert name in details


def test_siglip2_is_refused_naming_the_model_and_umap_naming_the_method(embedding):
    details = refused(embedding.ExplainMatch, E.ExplainMatchRequest(
        image=common_pb2.Image(data=png(IMAGE)), text="a red circle", methods=[E.EXPLAIN_METHOD_OCCLUSION],
        model="tiny-siglip2"), "model")
    assert "tiny-siglip2" in details
    scenes = [render_scene(EVAL_SEEDS.start + 900_200 + i, objects=1).image for i in range(6)]
    embedding.Upsert(embedding_pb2.UpsertRequest(collection="no-umap", items=[
        embedding_pb2.Item(id=f"i{i}", image=common_pb2.Image(data=png(s))) for i, s in enumerate(scenes)]),
        timeout=120)
    details = refused(embedding.MapCollection, E.MapCollectionRequest(collection="no-umap",
                                                                      method=E.MAP_METHOD_UMAP), "method")
    assert "umap-learn" in details
    assert embedding.MapCollection(E.MapCollectionRequest(collection="no-umap"), timeout=120).method == "tsne"
