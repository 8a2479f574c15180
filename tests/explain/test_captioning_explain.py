"""ExplainCaption, ExplainJudge and VisualizeJudge over loopback on a real captioning service."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.tensors import from_tensor
from synesthesia.v1 import captioning_pb2, common_pb2, explain_pb2
from tests.explain.conftest import decode_png, png, violations

E = explain_pb2
SCENE = render_scene(EVAL_SEEDS.start + 900_001, objects=2)


def explain_caption(stub, scene=SCENE, caption="", word_index=0, methods=(E.EXPLAIN_METHOD_GRAD_CAM,), **options):
    return stub.ExplainCaption(E.ExplainCaptionRequest(
        image=common_pb2.Image(data=png(scene.image)), caption=caption, word_index=word_index, methods=list(methods),
        options=E.ExplainOptions(**options)), timeout=120)


def test_a_word_is_explained_by_every_method_beside_the_attention(captioning):
    words = SCENE.captions[0].split()
    index = words.index(SCENE.objects[1].shape)
    methods = [E.EXPLAIN_METHOD_ATTENTION, E.EXPLAIN_METHOD_GRAD_CAM, E.EXPLAIN_METHOD_GUIDED_GRAD_CAM,
               E.EXPLAIN_METHOD_GUIDED_BACKPROP, E.EXPLAIN_METHOD_GRADIENT, E.EXPLAIN_METHOD_GRADIENT_SQUARED,
               E.EXPLAIN_METHOD_OCCLUSION]
    answer = explain_caption(captioning, caption=SCENE.captions[0], word_index=index, methods=methods,
                             occlusion_stride_px=8)
    assert answer.caption == SCENE.captions[0] and answer.word == SCENE.objects[1].shape
    assert answer.log_probability <= 0 and answer.model == "captioning"
    assert [e.method for e in answer.explanations] == methods
    maps = {}
    for e in answer.explanations:
        values = from_tensor(e.heatmap.values)
        assert values.shape == (64, 64) and np.isfinite(values).all() and np.ptp(values) > 0
        assert (e.heatmap.image_width_px, e.heatmap.image_height_px) == (64, 64)
        assert decode_png(e.overlay_png).shape == (64, 64, 3)
        maps[e.method] = values
    # The model's attention for this word sits on the object the word names (the captioner's own pointing).
    attention = maps[E.EXPLAIN_METHOD_ATTENTION]
    assert SCENE.objects[1].mask[np.unravel_index(attention.argmax(), attention.shape)]


def test_the_default_caption_is_the_greedy_one_and_its_word_probability_matches_caption(captioning):
    greedy = captioning.Caption(captioning_pb2.CaptionRequest(
        image=common_pb2.Image(data=png(SCENE.image)), options=captioning_pb2.CaptionOptions(beam_size=1)), timeout=60)
    for index in (0, 3):
        answer = explain_caption(captioning, word_index=index)
        assert answer.caption == greedy.caption
        assert answer.word == greedy.words[index].text
        assert answer.log_probability == pytest.approx(greedy.words[index].log_probability, abs=1e-3)


def test_the_overlay_keeps_the_callers_image_size(captioning):
    big = np.repeat(np.repeat(SCENE.image, 3, 0), 2, 1)  # 192 x 128
    answer = explain_caption(captioning, scene=type("S", (), {"image": big})(), word_index=1)
    e = answer.explanations[0]
    assert (e.heatmap.image_width_px, e.heatmap.image_height_px) == (128, 192)
    assert decode_png(e.overlay_png).shape == (192, 128, 3)


@pytest.mark.parametrize("request_fields, field", [
    (dict(methods=[]), "methods"),
    (dict(methods=[E.EXPLAIN_METHOD_UNSPECIFIED]), "methods[0]"),
    (dict(methods=[E.EXPLAIN_METHOD_CAM]), "methods[0]"),
    (dict(methods=[E.EXPLAIN_METHOD_GRADIENT, E.EXPLAIN_METHOD_GRADIENT]), "methods[1]"),
    (dict(word_index=40), "word_index"),
    (dict(caption="a large zebra"), "caption"),
    (dict(options=E.ExplainOptions(occlusion_stride_px=-1)), "options.occlusion_stride_px"),
])
def test_bad_requests_name_the_field(captioning, request_fields, field):
    fields = dict(image=common_pb2.Image(data=png(SCENE.image)), caption="a small red circle",
                  methods=[E.EXPLAIN_METHOD_OCCLUSION]) | request_fields
    with pytest.raises(grpc.RpcError) as caught:
        captioning.ExplainCaption(E.ExplainCaptionRequest(**fields), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(caught.value), caught.value.details()


def test_an_occlusion_beyond_the_budget_is_refused_before_any_work_naming_the_setting(captioning):
    with pytest.raises(grpc.RpcError) as caught:
        explain_caption(captioning, caption="a small red circle", methods=[E.EXPLAIN_METHOD_OCCLUSION],
                        occlusion_window_px=1, occlusion_stride_px=1)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "SYN_EXPLAIN_MAX_EVALUATIONS" in caught.value.details()
    assert "options.occlusion_stride_px" in violations(caught.value)


def judge_scene():
    return render_scene(EVAL_SEEDS.start + 900_002, objects=1)


def test_the_judge_explains_its_prediction(captioning):
    scene = judge_scene()
    methods = [E.EXPLAIN_METHOD_CAM, E.EXPLAIN_METHOD_GRAD_CAM, E.EXPLAIN_METHOD_OCCLUSION]
    answer = captioning.ExplainJudge(E.ExplainJudgeRequest(image=common_pb2.Image(data=png(scene.image)),
                                                           methods=methods), timeout=120)
    predicted = {p.head: p.class_name for p in answer.predictions}
    obj = scene.objects[0]
    assert predicted == {"shape": obj.shape, "colour": obj.colour, "size": obj.size, "domain": scene.domain}
    assert answer.head == "shape" and answer.class_name == obj.shape
    assert [e.method for e in answer.explanations] == methods
    for e in answer.explanations:
        assert from_tensor(e.heatmap.values).shape == (64, 64)
    other = captioning.ExplainJudge(E.ExplainJudgeRequest(
        image=common_pb2.Image(data=png(scene.image)), head="colour",
        class_name="green" if obj.colour != "green" else "red", methods=[E.EXPLAIN_METHOD_CAM]), timeout=60)
    assert other.head == "colour" and other.class_name != obj.colour
    assert not np.allclose(from_tensor(other.explanations[0].heatmap.values),
                           from_tensor(answer.explanations[0].heatmap.values))


def test_judge_bad_head_and_class(captioning):
    data = common_pb2.Image(data=png(judge_scene().image))
    for fields, field in ((dict(head="texture"), "head"), (dict(class_name="hexagon"), "class_name")):
        with pytest.raises(grpc.RpcError) as caught:
            captioning.ExplainJudge(E.ExplainJudgeRequest(image=data, methods=[E.EXPLAIN_METHOD_CAM], **fields),
                                    timeout=60)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in violations(caught.value)


def test_class_visualisation_raises_the_class_score(captioning):
    answer = captioning.VisualizeJudge(E.VisualizeJudgeRequest(
        kind=E.JUDGE_VISUALIZATION_CLASS, head="colour", class_name="blue", steps=40, seed=3), timeout=120)
    scores = from_tensor(answer.scores)
    assert scores.shape == (40,) and scores[-1] > scores[0] + 1.0
    values = from_tensor(answer.values)
    assert values.shape == (3, 64, 64) and values.min() >= 0 and values.max() <= 1
    assert decode_png(answer.picture_png).shape == (256, 256, 3)
    again = captioning.VisualizeJudge(E.VisualizeJudgeRequest(
        kind=E.JUDGE_VISUALIZATION_CLASS, head="colour", class_name="blue", steps=40, seed=3), timeout=120)
    assert np.array_equal(from_tensor(again.values), values)  # seeded
    with pytest.raises(grpc.RpcError) as caught:
        captioning.VisualizeJudge(E.VisualizeJudgeRequest(
            kind=E.JUDGE_VISUALIZATION_CLASS, head="colour", class_name="blue", steps=100_000), timeout=60)
    assert "SYN_EXPLAIN_MAX_STEPS" in caught.value.details() and "steps" in violations(caught.value)


def test_first_layer_filters_and_top_patches(captioning):
    filters = captioning.VisualizeJudge(E.VisualizeJudgeRequest(kind=E.JUDGE_VISUALIZATION_FIRST_LAYER_FILTERS),
                                        timeout=60)
    assert from_tensor(filters.values).shape == (24, 3, 3, 3)
    assert decode_png(filters.picture_png).ndim == 3
    assert filters.layers[0] == "trunk.0:24" and filters.layers[-1] == "trunk.5:96"
    patches = captioning.VisualizeJudge(E.VisualizeJudgeRequest(
        kind=E.JUDGE_VISUALIZATION_TOP_PATCHES, layer="trunk.3", channel=5, scene_count=64, top_k=8), timeout=120)
    assert len(patches.patches) == 8
    activations = [p.activation for p in patches.patches]
    assert activations == sorted(activations, reverse=True)
    for p in patches.patches:
        scene = render_scene(p.scene_seed, objects=1)
        crop = scene.image[int(p.box.y_min_px):int(p.box.y_max_px), int(p.box.x_min_px):int(p.box.x_max_px)]
        assert np.array_equal(decode_png(p.patch_png), crop)
    for fields, field in ((dict(layer="trunk.9"), "layer"), (dict(channel=500), "channel"),
                          (dict(scene_count=100_000), "scene_count"), (dict(top_k=1000), "top_k")):
        with pytest.raises(grpc.RpcError) as caught:
            captioning.VisualizeJudge(E.VisualizeJudgeRequest(kind=E.JUDGE_VISUALIZATION_TOP_PATCHES, **fields),
                                      timeout=60)
        assert field in violations(caught.value), caught.value.details()
