"""The shipped captioner on scenes from a second renderer written from SHAPESWORLD.md alone: PIL
polygons (no anti-aliasing), its own layout, colour jitter, noise and night rim. The model must
describe the world, not our renderer's pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from models.captioning.checkpoint import load_captioner
from models.images import images_to_batch
from models.captioning.decoding import beam_search
from models.captioning.scoring import PointingTally, SceneFacts, judge_caption
from models.shapesworld import COLOURS, SHAPES, reference_captions


def polygon(shape: str, cx: float, cy: float, e: float) -> list[tuple[float, float]]:
    h = e / 2
    if shape == "square":
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":  # equilateral, apex up, centred on its box
        th = e * math.sqrt(3) / 4
        return [(cx, cy - th), (cx + h, cy + th), (cx - h, cy + th)]
    if shape == "cross":  # plus sign, arm width e / 3
        a = e / 6
        return [(cx - a, cy - h), (cx + a, cy - h), (cx + a, cy - a), (cx + h, cy - a), (cx + h, cy + a),
                (cx + a, cy + a), (cx + a, cy + h), (cx - a, cy + h), (cx - a, cy + a), (cx - h, cy + a),
                (cx - h, cy - a), (cx - a, cy - a)]
    return [(cx + h * math.cos(t), cy + h * math.sin(t)) for t in np.linspace(0, 2 * np.pi, 40, endpoint=False)]


def draw_scene(rng: np.random.Generator, count: int, night: bool) -> tuple[np.ndarray, SceneFacts]:
    size = 64
    objects: list[dict] = []
    while len(objects) < count:
        shape, colour = SHAPES[rng.integers(4)], list(COLOURS)[rng.integers(6)]
        size_name = ("small", "large")[rng.integers(2)]
        e = int(rng.integers(10, 16) if size_name == "small" else rng.integers(20, 29))
        cx, cy = rng.uniform(2 + e / 2, size - 2 - e / 2, 2)
        if any((o["shape"], o["colour"]) == (shape, colour) or
               (abs(cx - o["centre"][0]) < (e + o["extent"]) / 2 + 2 and
                abs(cy - o["centre"][1]) < (e + o["extent"]) / 2 + 2) for o in objects):
            continue
        objects.append({"shape": shape, "colour": colour, "size": size_name, "centre": (cx, cy), "extent": e})
    background = tuple(int(v) for v in (rng.integers(5, 46, 3) if night else rng.integers(185, 246, 3)))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for obj in objects:
        rgb = np.clip(np.asarray(COLOURS[obj["colour"]]) + rng.integers(-12, 13, 3), 0, 255)
        points = polygon(obj["shape"], *obj["centre"], obj["extent"])
        if night:
            rim = tuple(int(v) for v in rgb + 0.2 * (255 - rgb))
            draw.polygon(points, fill=tuple(int(v) for v in rgb * rng.uniform(0.6, 0.8)), outline=rim,
                         width=int(rng.integers(1, 4)))
        else:
            draw.polygon(points, fill=tuple(int(v) for v in rgb))
        mask = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask).polygon(points, fill=255)
        obj["mask"] = np.asarray(mask) > 0
    if rng.random() < 0.5:  # a softer edge than ours, sometimes
        image = image.filter(ImageFilter.GaussianBlur(0.6))
    pixels = np.asarray(image, dtype=np.float64) + rng.normal(0, rng.uniform(0, 8), (size, size, 3))
    facts = SceneFacts(objects, size, reference_captions(objects, size))
    return np.clip(pixels, 0, 255).round().astype(np.uint8), facts


@pytest.mark.parametrize("count,threshold", [(1, 0.95), (2, 0.8)])
def test_other_renderer(count, threshold):
    torch.set_num_threads(1)
    model = load_captioner().model
    rng = np.random.default_rng(2024 + count)
    scenes = [draw_scene(rng, count, night=bool(i % 2)) for i in range(80)]
    images = images_to_batch([image for image, _ in scenes], model.config.image_size)
    captions = beam_search(model, images, [3] * len(scenes), [20] * len(scenes))
    right = [judge_caption(c.text, facts).attributes_right for c, (_, facts) in zip(captions, scenes)]
    assert np.mean(right) >= threshold, [(c.text, f.references[0]) for c, (_, f), r in
                                         zip(captions, scenes, right) if not r]
    tally = PointingTally()
    for caption, (_, facts) in zip(captions, scenes):
        tally.add_caption([w.text for w in caption.words], [w.attention for w in caption.words], facts)
    summary = tally.summary()
    assert summary["pointing_overlap"] >= 0.75 and summary["pointing_overlap"] > 3 * summary[
        "pointing_overlap_chance"], summary
