"""The shipped localiser on scenes from a second renderer written from SHAPESWORLD.md alone:
PIL polygons without anti-aliasing, its own layout and noise, and sounds made by additive
synthesis (band-limited waveforms) starting at a random phase. The model must not depend on
our renderer's pixels or our oscillators' sample-exact waveforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from models.audio.localize import load_localizer, localize
from models.shapesworld import AMPLITUDES, COLOURS, FREQUENCIES_HZ, SHAPES

RATE = 16000
HARMONICS = {  # (which harmonics, amplitude of harmonic n) of each shape's waveform
    "circle": (lambda n: n == 1, lambda n: 1.0),
    "square": (lambda n: n % 2 == 1, lambda n: 4 / (math.pi * n)),
    "triangle": (lambda n: n % 2 == 1, lambda n: 8 / (math.pi**2 * n**2) * (-1) ** ((n - 1) // 2)),
    "cross": (lambda n: True, lambda n: 2 / (math.pi * n) * (-1) ** (n + 1)),
}


def synthesise(shape: str, colour: str, size: str, rng: np.random.Generator) -> np.ndarray:
    f0 = FREQUENCIES_HZ[colour]
    t = np.arange(RATE) / RATE
    phase = rng.uniform(0, 2 * np.pi)
    keep, amplitude = HARMONICS[shape]
    wave = sum(amplitude(n) * np.sin(n * (2 * np.pi * f0 * t + phase))
               for n in range(1, int(RATE / 2 / f0) + 1) if keep(n))
    wave = AMPLITUDES[size] * wave / np.abs(wave).max()
    fade = int(0.01 * RATE)
    wave[:fade] *= np.linspace(0, 1, fade)
    wave[-fade:] *= np.linspace(1, 0, fade)
    snr_db = rng.uniform(10, 30)
    noise = rng.standard_normal(RATE) * np.sqrt(np.mean(wave**2) / 10 ** (snr_db / 10))
    return (wave + noise).astype(np.float32)


def polygon(shape: str, cx: float, cy: float, e: float) -> list[tuple[float, float]]:
    h = e / 2
    if shape == "square":
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        th = e * math.sqrt(3) / 4
        return [(cx, cy - th), (cx + h, cy + th), (cx - h, cy + th)]
    if shape == "cross":
        a = e / 6
        return [(cx - a, cy - h), (cx + a, cy - h), (cx + a, cy - a), (cx + h, cy - a), (cx + h, cy + a),
                (cx + a, cy + a), (cx + a, cy + h), (cx - a, cy + h), (cx - a, cy + a), (cx - h, cy + a),
                (cx - h, cy - a), (cx - a, cy - a)]
    return [(cx + h * math.cos(a), cy + h * math.sin(a)) for a in np.linspace(0, 2 * np.pi, 48, endpoint=False)]


def draw_scene(rng: np.random.Generator, night: bool):
    """Two objects that differ in shape or colour; returns (image, objects with masks)."""
    size = 64
    background = rng.integers(5, 46, 3) if night else rng.integers(185, 246, 3)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in background))
    objects = []
    while len(objects) < 2:
        shape, colour = SHAPES[rng.integers(4)], list(COLOURS)[rng.integers(6)]
        if objects and (objects[0]["shape"], objects[0]["colour"]) == (shape, colour):
            continue
        size_name = ["small", "large"][rng.integers(2)]
        e = rng.integers(10, 16) if size_name == "small" else rng.integers(20, 29)
        cx, cy = rng.uniform(2 + e / 2, size - 2 - e / 2, 2)
        if objects:
            ox, oy, oe = objects[0]["centre"] + (objects[0]["extent"],)
            if abs(cx - ox) < (e + oe) / 2 + 2 and abs(cy - oy) < (e + oe) / 2 + 2:
                continue
        objects.append({"shape": shape, "colour": colour, "size": size_name, "centre": (cx, cy), "extent": e})
    for obj in objects:
        rgb = np.clip(np.asarray(COLOURS[obj["colour"]]) + rng.integers(-12, 13, 3), 0, 255)
        points = polygon(obj["shape"], *obj["centre"], obj["extent"])
        mask_image = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask_image).polygon(points, fill=255)
        obj["mask"] = np.asarray(mask_image) > 0
        draw = ImageDraw.Draw(image)
        if night:
            body = tuple(int(v) for v in rgb * rng.uniform(0.6, 0.8))
            rim = tuple(int(v) for v in rgb + 0.2 * (255 - rgb))
            draw.polygon(points, fill=body, outline=rim, width=int(rng.integers(1, 3)))
        else:
            draw.polygon(points, fill=tuple(int(v) for v in rgb))
    pixels = np.asarray(image).astype(np.float32) + rng.normal(0, rng.uniform(0, 8), (size, size, 3))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8), objects


@pytest.mark.slow
def test_localises_scenes_from_another_renderer():
    model = load_localizer().model
    rng = np.random.default_rng(2024)
    images, clips, sounding, other = [], [], [], []
    for i in range(120):
        image, objects = draw_scene(rng, night=bool(i % 2))
        k = int(rng.integers(2))
        images.append(image)
        clips.append(synthesise(objects[k]["shape"], objects[k]["colour"], objects[k]["size"], rng))
        sounding.append(objects[k]["mask"])
        other.append(objects[1 - k]["mask"])
    results = localize(model, images, clips)
    on_sounding = np.mean([s[r.peak_xy[1], r.peak_xy[0]] for r, s in zip(results, sounding)])
    on_other = np.mean([o[r.peak_xy[1], r.peak_xy[0]] for r, o in zip(results, other)])
    assert on_sounding >= 0.85 and on_other <= 0.1, (on_sounding, on_other)
