"""A second, independent renderer written from SHAPESWORLD.md alone (PIL polygons, no anti-aliasing, so
small triangles differ by their edge pixels),
fed the scenes.jsonl records, must agree with ours on every object's pixels."""

import json
import math

import numpy as np
from PIL import Image, ImageDraw

from models.shapesworld.cli import main as cli_main


def _pil_mask(obj, size):
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    cx, cy = obj["centre"]
    e = obj["extent_px"]
    if obj["shape"] == "circle":
        draw.ellipse([cx - e / 2, cy - e / 2, cx + e / 2 - 1, cy + e / 2 - 1], fill=255)
    elif obj["shape"] == "square":
        draw.rectangle([cx - e / 2, cy - e / 2, cx + e / 2 - 1, cy + e / 2 - 1], fill=255)
    elif obj["shape"] == "triangle":
        h = e * math.sqrt(3) / 2
        draw.polygon([(cx, cy - h / 2), (cx + e / 2, cy + h / 2), (cx - e / 2, cy + h / 2)], fill=255)
    elif obj["shape"] == "cross":
        a = e / 3
        draw.rectangle([cx - e / 2, cy - a / 2, cx + e / 2 - 1, cy + a / 2 - 1], fill=255)
        draw.rectangle([cx - a / 2, cy - e / 2, cx + a / 2 - 1, cy + e / 2 - 1], fill=255)
    return np.asarray(image) > 0


def test_an_independent_renderer_agrees(tmp_path):
    assert cli_main(["generate", "--out", str(tmp_path), "--count", "60", "--seed", "1000500",
                     "--domain", "day", "--quiet"]) == 0
    ious = []
    for line in (tmp_path / "scenes.jsonl").read_text().splitlines():
        record = json.loads(line)
        image = np.asarray(Image.open(tmp_path / record["image"])).astype(float)
        for obj in record["objects"]:
            theirs = _pil_mask(obj, record["size"])
            # Our object, found from the pixels alone: those close to its colour near its box.
            x0, y0, x1, y1 = obj["bbox"]
            near = np.zeros_like(theirs)
            near[max(0, y0 - 1):y1 + 1, max(0, x0 - 1):x1 + 1] = True
            ours = near & (np.abs(image - np.asarray(obj["rgb"])).max(axis=2) < 45)
            ious.append((ours & theirs).sum() / (ours | theirs).sum())
    assert min(ious) > 0.6 and np.mean(ious) > 0.88, (min(ious), np.mean(ious))
