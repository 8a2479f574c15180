"""Per-word attention: shape = the encoder's grid, non-negative, sums to 1, sized to the request's image;
absent unless asked for. ListModels describes the shipped model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.tensors import from_tensor
from synesthesia.v1 import captioning_pb2, common_pb2
from tests.captioning.conftest import caption_request, encode

SCENE = render_scene(EVAL_SEEDS[31000])


@pytest.mark.parametrize("width,height", [(64, 64), (100, 80), (37, 211)])
def test_attention_maps(captioning_stub, width, height):
    image = Image.fromarray(SCENE.image).resize((width, height), Image.BILINEAR)
    response = captioning_stub.Caption(caption_request(encode(image), attention=True), timeout=60)
    assert response.words and response.model == "captioning"
    for word in response.words:
        heat = from_tensor(word.attention.values)
        assert heat.shape == (8, 8)
        assert (heat >= 0).all()
        assert heat.sum() == pytest.approx(1.0, abs=1e-4)
        assert (word.attention.image_width_px, word.attention.image_height_px) == (width, height)
    assert response.log_probability == pytest.approx(sum(w.log_probability for w in response.words), abs=1.0)
    assert response.log_probability <= sum(w.log_probability for w in response.words) + 1e-4  # plus log p(<end>)


def test_no_attention_unless_asked(captioning_stub):
    response = captioning_stub.Caption(caption_request(encode(SCENE.image)), timeout=60)
    assert response.words and not any(w.HasField("attention") for w in response.words)
    assert response.caption == " ".join(w.text for w in response.words)


def test_list_models(captioning_stub):
    models = captioning_stub.ListModels(captioning_pb2.ListCaptioningModelsRequest(), timeout=30).models
    (model,) = models
    assert model.name == "captioning" and model.is_default and model.task == "captioning"
    assert model.backend == common_pb2.MODEL_BACKEND_BUILTIN
    assert len(model.weights_sha256) == 64 and model.parameter_count > 100_000
    assert model.metrics["bleu_4"] >= 0.6 and "pointing_overlap" in model.metrics
    assert model.device in ("cpu",) or model.device.startswith("cuda")


def test_named_default_model_answers(captioning_stub):
    response = captioning_stub.Caption(caption_request(encode(SCENE.image), model="captioning"), timeout=60)
    assert response.model == "captioning" and response.caption
    assert np.isfinite(response.log_probability)
