"""ImageToImage through a real Generation server: output sizes, NOT_FOUND, bad images.

The quality of the translations is tested by test_image_to_image_quality.py;
here the service contract: whatever size goes in comes out, models that are
not shipped are NOT_FOUND, and bad images are refused naming `image.data`.
"""

from __future__ import annotations

import json
import shutil

import grpc
import numpy as np
import pytest

from models.generation.image_to_image import available_image_to_image_models
from models.training import CHECKPOINT_DIR, read_manifest
from tests.generation.helpers import SERVICE, decode_png, image_to_image, list_models, png, text_to_image
from tests.runtime.helpers import field_violations, png_declaring, solid_png

IMAGE_TO_IMAGE = ("sketch2photo", "day2night", "night2day")
SHIPPED = available_image_to_image_models()
MISSING = [n for n in IMAGE_TO_IMAGE if n not in SHIPPED]


@pytest.fixture(scope="module")
def server(shared_service):
    return shared_service(SERVICE)


def scene_png(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return png(rng.integers(0, 256, (height, width, 3)))


def test_list_models_lists_exactly_the_shipped_models(server):
    assert sorted(m.name for m in list_models(server.target)) == sorted(["text2image", *SHIPPED])


@pytest.mark.parametrize("model", SHIPPED or [pytest.param("none", marks=pytest.mark.skip("no model shipped"))])
@pytest.mark.parametrize("width, height", [(64, 64), (100, 37), (33, 200), (256, 256), (1, 1)])
def test_output_has_the_input_size(server, model, width, height):
    reply = image_to_image(server.target, scene_png(width, height), model)
    assert reply.model == model
    assert decode_png(reply.image.data).shape == (height, width, 3)


@pytest.mark.parametrize("model", ["no-such-model", *MISSING])
def test_unknown_or_unshipped_models_are_not_found(server, model):
    with pytest.raises(grpc.RpcError) as err:
        image_to_image(server.target, scene_png(64, 64), model)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert [f for f, _ in field_violations(err.value)] == ["model"]
    assert model in err.value.details()


@pytest.mark.parametrize("model, code", [("", grpc.StatusCode.INVALID_ARGUMENT),
                                         ("text2image", grpc.StatusCode.INVALID_ARGUMENT)])
def test_a_missing_or_text_model_is_refused(server, model, code):
    with pytest.raises(grpc.RpcError) as err:
        image_to_image(server.target, scene_png(64, 64), model)
    assert err.value.code() == code
    assert [f for f, _ in field_violations(err.value)] == ["model"]


BAD_IMAGES = [
    (b"", grpc.StatusCode.INVALID_ARGUMENT),
    (b"\x89PNG\r\n\x1a\nnot really a png", grpc.StatusCode.INVALID_ARGUMENT),
    (solid_png(9, 64, 64)[:40], grpc.StatusCode.INVALID_ARGUMENT),
    (png_declaring(100_000, 100_000), grpc.StatusCode.RESOURCE_EXHAUSTED),
]


@pytest.mark.skipif(not SHIPPED, reason="no image-to-image model shipped yet")
@pytest.mark.parametrize("data, code", BAD_IMAGES, ids=["empty", "garbage", "truncated", "huge canvas"])
def test_bad_images_name_the_field_and_the_server_keeps_serving(server, data, code):
    model = SHIPPED[0]
    with pytest.raises(grpc.RpcError) as err:
        image_to_image(server.target, data, model)
    assert err.value.code() == code
    assert [f for f, _ in field_violations(err.value)] == ["image.data"]
    assert decode_png(image_to_image(server.target, scene_png(40, 30), model).image.data).shape == (30, 40, 3)


def test_a_checkpoint_directory_without_image_models_serves_text_only(service_process, tmp_path):
    # Copy only text2image (file and manifest entry) into a fresh checkpoint directory.
    shutil.copy(CHECKPOINT_DIR / "text2image.safetensors", tmp_path)
    entry = read_manifest()["text2image"]
    (tmp_path / "manifest.json").write_text(json.dumps({"text2image": entry}))
    server = service_process(SERVICE, {"SYN_CHECKPOINT_DIR": str(tmp_path)})
    assert [m.name for m in list_models(server.target)] == ["text2image"]
    for model in IMAGE_TO_IMAGE:
        with pytest.raises(grpc.RpcError) as err:
            image_to_image(server.target, scene_png(64, 64), model)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert [f for f, _ in field_violations(err.value)] == ["model"]
    assert len(text_to_image(server.target, "a small green square", image_count=2, seed=4).images) == 2


def test_an_empty_checkpoint_directory_starts_and_answers_not_found(service_process, tmp_path):
    server = service_process(SERVICE, {"SYN_CHECKPOINT_DIR": str(tmp_path)})
    assert list_models(server.target) == []
    with pytest.raises(grpc.RpcError) as err:
        text_to_image(server.target, "a small green square")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert [f for f, _ in field_violations(err.value)] == ["model"]


@pytest.mark.skipif(sorted(SHIPPED) != sorted(IMAGE_TO_IMAGE), reason="the three built-ins are not all shipped")
def test_built_ins_warn_about_inputs_outside_their_world(server):
    """Each built-in translator flags a picture that is plainly not its ShapesWorld input (a photograph, a
    scene of the other domain, a scene where a sketch belongs) and is silent on its own inputs."""
    from models.shapesworld import EVAL_SEEDS, render_scene
    from tests.shapesworld.test_world_check import photographs

    day, night = (render_scene(EVAL_SEEDS[8], domain=d) for d in ("day", "night"))
    photo = dict(photographs())["astronaut[0]"]
    for model, own, foreign in (("sketch2photo", day.sketch, day.image), ("day2night", day.image, night.image),
                                ("night2day", night.image, day.image)):
        assert list(image_to_image(server.target, png(own), model).warnings) == [], model
        for picture in (foreign, photo):
            reply = image_to_image(server.target, png(picture), model)
            assert len(reply.warnings) == 1 and f"'{model}'" in reply.warnings[0], (model, reply.warnings)
            assert decode_png(reply.image.data).shape == picture.shape  # still translated, with the note
    (warning,) = image_to_image(server.target, png(day.image), "night2day").warnings
    assert "a ShapesWorld night scene" in warning and "it is a day scene" in warning
