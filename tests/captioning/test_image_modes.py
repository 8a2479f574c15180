"""Any image size, mode and format is accepted and resized; lossless re-encodings caption the same,
and scenes rendered at other canvas sizes are still described right."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from models.captioning.scoring import SceneFacts, judge_caption
from models.shapesworld import EVAL_SEEDS, render_scene
from tests.captioning.conftest import caption_request, encode

SCENE = render_scene(EVAL_SEEDS[34000], objects=1, domain="day")
RGB = Image.fromarray(SCENE.image)
FACTS = SceneFacts.from_scene(SCENE)


def _sixteen_bit_grey() -> Image.Image:
    grey = np.asarray(RGB.convert("L"), dtype=np.uint16) * 257
    return Image.fromarray(grey.astype(np.uint16))  # mode I;16


VARIANTS = {
    "rgba opaque png": (lambda: RGB.convert("RGBA"), "PNG"),
    "bmp": (lambda: RGB, "BMP"),
    "tiff": (lambda: RGB, "TIFF"),
    "lossless webp": (lambda: RGB, "WEBP"),
    "palette png": (lambda: RGB.quantize(256), "PNG"),
    "palette gif": (lambda: RGB.quantize(256), "GIF"),
    "jpeg": (lambda: RGB, "JPEG"),
    "greyscale png": (lambda: RGB.convert("L"), "PNG"),
    "greyscale + alpha png": (lambda: RGB.convert("LA"), "PNG"),
    "16-bit greyscale png": (_sixteen_bit_grey, "PNG"),
    "bilevel png": (lambda: RGB.convert("1"), "PNG"),
    "cmyk jpeg": (lambda: RGB.convert("CMYK"), "JPEG"),
    "transparent background png": (lambda: _transparent(), "PNG"),
    "palette with transparency png": (lambda: _palette_transparent(), "PNG"),
    "tiny 5x3": (lambda: RGB.resize((5, 3)), "PNG"),
    "large 1024x768": (lambda: RGB.resize((1024, 768), Image.BILINEAR), "PNG"),
}
SAME_CAPTION = {"rgba opaque png", "bmp", "tiff", "lossless webp"}
SAME_ATTRIBUTES = {"palette png", "palette gif", "jpeg", "large 1024x768"}


def _transparent() -> Image.Image:
    rgba = RGB.convert("RGBA")
    alpha = np.where(np.any([o.mask for o in SCENE.objects], 0), 255, 0).astype(np.uint8)
    rgba.putalpha(Image.fromarray(alpha))
    return rgba


def _palette_transparent() -> Image.Image:
    palette = RGB.quantize(255)
    palette.info["transparency"] = 0
    return palette


@pytest.fixture(scope="module")
def reference(captioning_stub):
    return captioning_stub.Caption(caption_request(encode(RGB)), timeout=60).caption


@pytest.mark.parametrize("name", list(VARIANTS))
def test_image_variant_is_captioned(captioning_stub, reference, name):
    make, fmt = VARIANTS[name]
    save = {"lossless": True} if fmt == "WEBP" else {"quality": 95} if fmt == "JPEG" else {}
    response = captioning_stub.Caption(caption_request(encode(make(), fmt, **save), attention=True), timeout=60)
    assert response.words and all(w.text for w in response.words)
    assert response.caption == " ".join(w.text for w in response.words)
    if name in SAME_CAPTION:
        assert response.caption == reference
    if name in SAME_ATTRIBUTES:
        assert judge_caption(response.caption, FACTS).attributes_right, response.caption


@pytest.mark.parametrize("size", [48, 128, 256])
def test_scenes_rendered_at_other_sizes(captioning_stub, size):
    seeds = EVAL_SEEDS[35000:35006]
    right = 0
    for seed in seeds:
        scene = render_scene(seed, size=size, objects=1)
        caption = captioning_stub.Caption(caption_request(encode(scene.image)), timeout=60).caption
        right += judge_caption(caption, SceneFacts.from_scene(scene)).attributes_right
    assert right >= len(seeds) - 1
