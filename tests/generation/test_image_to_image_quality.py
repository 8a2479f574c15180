"""The shipped image-to-image checkpoints on held-out scenes (EVAL_SEEDS), in process.

- sketch2photo: PSNR against the day render, next to the ceiling a sketch allows (the sketch
  carries no trace of the day background colour; see docs/image_to_image.md), and the judge
  reads the sketched object back from the photo.
- day2night / night2day: the judge sees the target domain and the scene's own colour and shape.
- Served == evaluated: the metrics recorded in the manifest are recomputed from the loaded
  checkpoint through the serving wrapper, and a real Generation server answers what
  `translate` computes.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from models.generation import evaluate_image_to_image as evaluation
from models.generation.cyclegan import DIRECTIONS
from models.generation.image_to_image import available_image_to_image_models, load_image_to_image

pytestmark = pytest.mark.slow

SCENES = 100
SHIPPED = available_image_to_image_models()
# sketch2photo's PSNR must come within this many dB of the best a sketch-only model can do in
# expectation (the 25 dB is above that ceiling; see docs/image_to_image.md).
PSNR_GAP_TO_CEILING_DB = 1.5


def shipped(name: str):
    if name not in SHIPPED:
        pytest.skip(f"{name} is not shipped in models/checkpoints")
    return load_image_to_image(name, "cpu")


@pytest.fixture(scope="module")
def judge():
    from models.judge import load_judge

    return load_judge()


def test_sketch2photo_comes_close_to_the_sketch_ceiling(judge):
    model = shipped("sketch2photo")
    metrics = evaluation.sketch2photo_metrics(model.translate, SCENES, judge=judge)
    references = evaluation.sketch2photo_references(SCENES)
    assert metrics["psnr_db"] >= references["ceiling_sketch_psnr_db"] - PSNR_GAP_TO_CEILING_DB, (metrics, references)
    assert metrics["psnr_db"] > references["identity_psnr_db"] + 15.0
    assert metrics["l1"] < 0.25 * references["identity_l1"]
    # The photo shows the sketched object: the judge reads its colour and shape back, in daylight.
    assert metrics["domain_accuracy"] >= evaluation.TARGET_DOMAIN_ACCURACY, metrics
    assert metrics["colour_preserved"] >= evaluation.TARGET_PRESERVED, metrics
    assert metrics["shape_preserved"] >= evaluation.TARGET_PRESERVED, metrics


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_cyclegan_changes_the_domain_and_lands_near_the_other_render(judge, name):
    model = shipped(name)
    source, target = DIRECTIONS[name]
    metrics = evaluation.direction_metrics(model.translate, source, target, judge, SCENES)
    references = evaluation.direction_references(source, target, SCENES)
    assert metrics["domain_accuracy"] >= evaluation.TARGET_DOMAIN_ACCURACY, metrics
    assert metrics["size_preserved"] >= evaluation.TARGET_PRESERVED, metrics
    # Far closer to the same scene in the other domain than the input is.
    assert metrics["l1_other_domain"] < 0.25 * references["identity_l1_other_domain"], (metrics, references)


@pytest.mark.xfail(strict=True, reason="known gap: the shipped CycleGAN keeps shapes only ~85% and colours "
                                       "~12-33% of the time (docs/image_to_image.md); strict, so a model that "
                                       "meets the targets turns this into a failure to remove the mark")
@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_cyclegan_keeps_the_colour_and_shape(judge, name):
    model = shipped(name)
    source, target = DIRECTIONS[name]
    metrics = evaluation.direction_metrics(model.translate, source, target, judge, SCENES)
    assert metrics["colour_preserved"] >= evaluation.TARGET_PRESERVED, metrics
    assert metrics["shape_preserved"] >= evaluation.TARGET_PRESERVED, metrics


@pytest.mark.parametrize("name", ["sketch2photo", *sorted(DIRECTIONS)])
def test_the_manifest_metrics_are_what_the_shipped_weights_score(judge, name):
    # Recomputed through load_image_to_image(...).translate, the serving path; the manifest's
    # numbers were measured in the training process on the network before it was saved.
    shipped(name)
    recorded = load_image_to_image(name, "cpu").manifest_entry["metrics"]
    measured = evaluation.evaluate(name, judge=judge)
    for key, value in measured.items():
        assert recorded[key] == pytest.approx(value, abs=2e-3), key


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_generation_server_answers_what_translate_computes(shared_service):
    from tests.generation.helpers import SERVICE, decode_png, image_to_image

    if not SHIPPED:
        pytest.skip("no image-to-image model shipped")
    server = shared_service(SERVICE)
    sketches, _ = evaluation.sketch2photo_pairs(SCENES)
    day, _, _ = evaluation.domain_scenes("day", SCENES, None)
    night, _, _ = evaluation.domain_scenes("night", SCENES, None)
    inputs = {"sketch2photo": sketches[:4], "day2night": day[:4], "night2day": night[:4]}
    for name in SHIPPED:
        model = load_image_to_image(name, "cpu")
        expected = evaluation.translate_uint8(model.translate, inputs[name])
        for image, want in zip(inputs[name], expected):
            served = decode_png(image_to_image(server.target, png(image), name).image.data)
            difference = np.abs(served.astype(int) - want.astype(int))
            # Bit-exact but for float rounding on another batch size: at most one level on a few pixels.
            assert difference.max() <= 1 and (difference > 0).mean() < 0.01, name
            assert not np.array_equal(served, image)
