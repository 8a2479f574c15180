"""Raw-pixel images (common.RawPixels): the same answers as PNG, and each malformed part refused by name.

Runs against the real captioning and embedding services (one process each, shipped checkpoints).
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from PIL import Image

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.pictures import png_bytes
from synesthesia.tensors import from_tensor
from synesthesia.v1 import captioning_pb2, common_pb2, embedding_pb2
from tests.captioning.conftest import captioning_stub, captioning_target  # noqa: F401 - fixtures
from tests.embedding.conftest import embedding_stub, embedding_target  # noqa: F401 - fixtures
from tests.runtime.helpers import field_violations

SCENES = [render_scene(seed) for seed in EVAL_SEEDS[:4]]


def raw(pixels: np.ndarray, **override) -> common_pb2.Image:
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    fields = dict(data=pixels.tobytes(), height_px=pixels.shape[0], width_px=pixels.shape[1],
                  channels=1 if pixels.ndim == 2 else pixels.shape[2])
    fields.update(override)
    return common_pb2.Image(pixels=common_pb2.RawPixels(**fields))


def caption(stub, image: common_pb2.Image) -> captioning_pb2.CaptionResponse:
    return stub.Caption(captioning_pb2.CaptionRequest(image=image, include_attention=True), timeout=60)


def test_raw_pixels_caption_exactly_like_their_png(captioning_stub):  # noqa: F811
    for scene in SCENES:
        from_png = caption(captioning_stub, common_pb2.Image(data=png_bytes(scene.image)))
        from_raw = caption(captioning_stub, raw(scene.image))
        assert from_raw.caption == from_png.caption and from_raw.caption
        assert from_raw.log_probability == pytest.approx(from_png.log_probability, abs=1e-5)
        assert [w.attention.image_width_px for w in from_raw.words] == [64] * len(from_raw.words)


def test_grey_and_rgba_raw_pixels_are_converted_like_decoded_files(captioning_stub):  # noqa: F811
    rgb = SCENES[0].image
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert caption(captioning_stub, raw(grey)).caption == caption(
        captioning_stub, common_pb2.Image(data=png_bytes(np.stack([grey] * 3, -1)))).caption
    assert caption(captioning_stub, raw(rgba)).caption == caption(captioning_stub, raw(rgb)).caption


def test_raw_pixels_embed_exactly_like_their_png(embedding_stub):  # noqa: F811
    images = [raw(s.image) for s in SCENES] + [common_pb2.Image(data=png_bytes(s.image)) for s in SCENES]
    reply = embedding_stub.EmbedImages(embedding_pb2.EmbedImagesRequest(images=images), timeout=60)
    vectors = from_tensor(reply.embeddings)
    np.testing.assert_allclose(vectors[:4], vectors[4:], atol=1e-6)


BAD = {
    "too few bytes": (dict(data=b"\0" * 10), grpc.StatusCode.INVALID_ARGUMENT, "image.pixels.data"),
    "five channels": (dict(channels=5), grpc.StatusCode.INVALID_ARGUMENT, "image.pixels.channels"),
    "zero height": (dict(height_px=0), grpc.StatusCode.INVALID_ARGUMENT, "image.pixels"),
    "negative width": (dict(width_px=-4), grpc.StatusCode.INVALID_ARGUMENT, "image.pixels"),
    "beyond the pixel limit": (dict(height_px=100_000, width_px=100_000), grpc.StatusCode.RESOURCE_EXHAUSTED,
                               "image.pixels"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_raw_pixels_name_the_field_and_the_service_keeps_serving(captioning_stub, case):  # noqa: F811
    override, code, field = BAD[case]
    with pytest.raises(grpc.RpcError) as err:
        caption(captioning_stub, raw(SCENES[0].image, **override))
    assert err.value.code() == code
    assert field in [f for f, _ in field_violations(err.value)]
    assert caption(captioning_stub, raw(SCENES[1].image)).caption
