"""The shipped image-to-image checkpoints on held-out scenes (EVAL_SEEDS), in process.

- sketch2photo: PSNR against the day render, next to the ceiling a sketch allows (the sketch
  carries no trace of the day background colour; see docs/image_to_image.md), and the judge
  reads the sketched object back from the photo.
- day2night / night2day: the judge sees the target domain and the scene's own colour and shape,
  on our renderer's scenes and on the judge's second renderer's.
- Served == evaluated: the metrics recorded in the manifest are recomputed from the loaded
  checkpoint through the serving wrapper, and a real Generation server answers what
  `translate` computes.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from models.generation import evaluate_image_to_image as evaluation
from models.generation.cyclegan import DIRECTIONS
from models.generation.image_to_image import available_image_to_image_models, load_image_to_image

pytestmark = pytest.mark.slow

SHIPPED = available_image_to_image_models()
# sketch2photo's PSNR must come within this many dB of the best a sketch-only model can do in
# expectation (the 25 dB is above that ceiling; see docs/image_to_image.md).
PSNR_GAP_TO_CEILING_DB = 1.0


def shipped(name: str):
    if name not in SHIPPED:
        pytest.skip(f"{name} is not shipped in models/checkpoints")
    return load_image_to_image(name, "cpu")


@pytest.fixture(scope="module")
def judge():
    from models.judge import load_judge

    return load_judge()


@pytest.fixture(scope="module")
def measured(judge):
    """name -> every metric of the shipped checkpoint on the full held-out sets (300 sketch2photo
    scenes, 200 per CycleGAN direction), measured once per test module through the serving path."""
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        shipped(name)
        if name not in cache:
            cache[name] = evaluation.evaluate(name, judge=judge)
        return cache[name]

    return get


def test_sketch2photo_comes_close_to_the_sketch_ceiling(measured):
    metrics = measured("sketch2photo")
    # Why the 25 dB is not the bar: no sketch-only model reaches it in expectation.
    assert metrics["ceiling_sketch_psnr_db"] < evaluation.TARGET_PSNR_DB, metrics
    assert metrics["psnr_db"] >= metrics["ceiling_sketch_psnr_db"] - PSNR_GAP_TO_CEILING_DB, metrics
    assert metrics["psnr_db"] > metrics["identity_psnr_db"] + 15.0
    assert metrics["l1"] < 0.25 * metrics["identity_l1"]
    # The photo shows the sketched object: the judge reads its colour and shape back, in daylight.
    assert metrics["domain_accuracy"] >= evaluation.TARGET_DOMAIN_ACCURACY, metrics
    assert metrics["colour_preserved"] >= evaluation.TARGET_PRESERVED, metrics
    assert metrics["shape_preserved"] >= evaluation.TARGET_PRESERVED, metrics


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_cyclegan_changes_the_domain_and_keeps_the_scene(measured, name):
    metrics = measured(name)
    assert metrics["domain_accuracy"] >= evaluation.TARGET_DOMAIN_ACCURACY, metrics
    assert metrics["colour_preserved"] >= evaluation.TARGET_PRESERVED, metrics
    assert metrics["shape_preserved"] >= evaluation.TARGET_PRESERVED, metrics
    # Far closer to the same scene in the other domain than the input is.
    assert metrics["l1_other_domain"] < 0.25 * metrics["identity_l1_other_domain"], metrics


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_cyclegan_works_on_another_renderers_scenes(measured, name):
    # The judge's second renderer follows SHAPESWORLD.md with other legal pixel choices. Shape is
    # held to less: the judge itself reads only ~95 % of that renderer's night shapes.
    metrics = measured(name)
    assert metrics["alt_domain_accuracy"] >= evaluation.TARGET_DOMAIN_ACCURACY, metrics
    assert metrics["alt_colour_preserved"] >= evaluation.TARGET_PRESERVED, metrics
    assert metrics["alt_shape_preserved"] >= 0.8, metrics


@pytest.mark.parametrize("name", ["sketch2photo", *sorted(DIRECTIONS)])
def test_the_manifest_metrics_are_what_the_shipped_weights_score(measured, name):
    # Recomputed through load_image_to_image(...).translate, the serving path; the manifest's
    # numbers were measured in the training process on the network before it was saved.
    recorded = shipped(name).manifest_entry["metrics"]
    for key, value in measured(name).items():
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
    sketches, _ = evaluation.sketch2photo_pairs(evaluation.SKETCH2PHOTO_SCENES)
    day, _, _ = evaluation.domain_scenes("day", evaluation.CYCLEGAN_SCENES, None)
    night, _, _ = evaluation.domain_scenes("night", evaluation.CYCLEGAN_SCENES, None)
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
