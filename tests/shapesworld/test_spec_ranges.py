"""The spec's ranges, measured on rendered pixels: backgrounds, noise, colours, sizes, margins, gaps, shapes."""

import math

import numpy as np
import pytest
from scipy import ndimage

from models.shapesworld import COLOURS, SIZE_RANGES_PX, object_masks, render_objects, render_scene
from models.shapesworld.spec import extent_range_px

SEEDS = range(1_000_000, 1_000_300)


@pytest.fixture(scope="module")
def scenes():
    return [render_scene(seed) for seed in SEEDS]


def _background(scene):
    covered = np.zeros(scene.mask.shape, bool)
    for obj in scene.objects:
        covered |= ndimage.binary_dilation(obj.mask, iterations=2)
    return ~covered


@pytest.mark.parametrize("which", ["image", "image_other_domain"])
def test_background_ranges_and_noise(scenes, which):
    for scene in scenes:
        domain = scene.domain if which == "image" else scene.other_domain
        pixels = getattr(scene, which)[_background(scene)].astype(np.float64)
        mean, std = pixels.mean(axis=0), pixels.std(axis=0)
        lo, hi = (185, 245) if domain == "day" else (5, 45)
        # The noise is zero-mean; clipping at 0 can lift a dark background's mean a little.
        assert np.all(mean > lo - 1.0) and np.all(mean < hi + 1.0), (scene.seed, domain, mean)
        assert np.all(std < 8.6), (scene.seed, std)


def test_noise_spans_the_allowed_range(scenes):
    stds = [scene.image[_background(scene)].astype(float).std(axis=0).mean() for scene in scenes]
    assert min(stds) < 1.5 and max(stds) > 6.5


def test_object_sizes_margins_and_gaps(scenes):
    for scene in scenes:
        assert len(scene.objects) in (1, 2)
        for obj in scene.objects:
            lo, hi = SIZE_RANGES_PX[obj.size]
            assert lo <= obj.extent_px <= hi
            x0, y0, x1, y1 = obj.bbox
            assert x0 >= 2 and y0 >= 2 and x1 <= 62 and y1 <= 62, obj.bbox
            assert x1 - x0 in (obj.extent_px - 1, obj.extent_px), (obj.shape, obj.extent_px, obj.bbox)
            assert obj.mask.sum() > 0 and obj.mask[y0:y1, x0:x1].sum() == obj.mask.sum()
        if len(scene.objects) == 2:
            a, b = scene.objects
            assert (a.shape, a.colour) != (b.shape, b.colour)
            near_a = ndimage.binary_dilation(a.mask, structure=np.ones((3, 3), bool), iterations=2)
            assert not (near_a & b.mask).any(), scene.seed  # at least 2 px apart


def test_day_object_colours(scenes):
    for scene in scenes:
        for obj in scene.objects:
            assert all(abs(c - n) <= 12 for c, n in zip(obj.rgb, COLOURS[obj.colour]))
            core = ndimage.binary_erosion(obj.mask, iterations=1)
            measured = scene.day_image[core].astype(float).mean(axis=0)
            assert np.all(np.abs(measured - np.asarray(obj.rgb)) < 3.0), (scene.seed, measured, obj.rgb)
            nearest = min(COLOURS, key=lambda name: np.sum((np.asarray(COLOURS[name]) - measured) ** 2))
            assert nearest == obj.colour


def test_night_objects_are_dimmed_with_a_lighter_rim(scenes):
    checked = 0
    for scene in scenes:
        for obj in scene.objects:
            if obj.size != "large":
                continue
            depth = ndimage.distance_transform_edt(obj.mask)
            body, rim = depth > 4.5, obj.mask & (depth <= 1)
            if body.sum() < 10:
                continue
            night = scene.night_image.astype(float)
            ratio = night[body].mean(axis=0) / np.asarray(obj.rgb, float)
            bright = [c for c in range(3) if obj.rgb[c] > 100]  # dark channels sit near the noise floor
            assert np.all(ratio[bright] > 0.57) and np.all(ratio[bright] < 0.83), (scene.seed, ratio)
            assert night[rim].mean() > night[body].mean() + 10, scene.seed
            checked += 1
    assert checked > 50


def test_shape_geometry():
    size = 64
    for shape in ("circle", "square", "triangle", "cross"):
        for extent in (10, 15, 21, 28):
            height = round(extent * math.sqrt(3) / 2) if shape == "triangle" else extent
            spec = {"shape": shape, "colour": "red", "extent_px": extent, "centre": (20 + extent / 2, 20 + height / 2)}
            image = render_objects([spec], size, "day", seed=1)
            (mask,) = object_masks([spec], size)
            area = mask.sum()
            expected = {"circle": math.pi * extent ** 2 / 4, "square": extent ** 2,
                        "triangle": extent * height / 2, "cross": extent ** 2 * 5 / 9}[shape]
            tolerance = 0.16 if extent < 12 else 0.08  # small shapes quantise to whole pixels
            assert abs(area - expected) / expected < tolerance, (shape, extent, area, expected)
            rows = np.flatnonzero(mask.any(axis=1))
            widths = mask[rows].sum(axis=1)
            if shape == "triangle":  # apex up: rows widen downwards
                assert widths[0] <= 3 and widths[-1] >= extent - 1
                assert np.all(np.diff(widths) >= -1)
                assert len(rows) in (height - 1, height)
            if shape == "cross":  # plus sign: the arms are a third of the extent wide
                assert mask[20 + extent // 2, 20 + extent // 2] and not mask[rows[0], 21]
                assert abs(widths[0] - extent / 3) <= 1.5
            if shape == "square":
                assert np.all(widths == extent)
            red = image[mask].astype(float).mean(axis=0)
            assert red[0] > 150 and red[1] < 90


@pytest.mark.parametrize("size", [32, 48, 128, 256])
def test_other_canvas_sizes_render_to_scale(size):
    for seed in range(15):
        scene = render_scene(seed, size=size)
        assert scene.image.shape == (size, size, 3)
        margin = max(2, round(2 * size / 64))
        for obj in scene.objects:
            lo, hi = extent_range_px(obj.size, size)
            assert lo <= obj.extent_px <= hi
            assert abs(lo - SIZE_RANGES_PX[obj.size][0] * size / 64) <= 0.5
            x0, y0, x1, y1 = obj.bbox
            assert min(x0, y0) >= margin and max(x1, y1) <= size - margin


def test_sketch(scenes):
    for scene in scenes[:80]:
        union = np.zeros(scene.mask.shape, bool)
        for obj in scene.objects:
            union |= obj.mask
            outline = obj.mask & ~ndimage.binary_erosion(obj.mask, iterations=1)
            measured = scene.sketch[outline].astype(float).mean(axis=0)
            assert np.all(np.abs(measured - np.asarray(obj.rgb)) < 60), (scene.seed, measured, obj.rgb)
            interior = ndimage.distance_transform_edt(obj.mask) > 4
            assert scene.sketch[interior].max(initial=0) == 0  # an outline, not a fill
        outside = ~ndimage.binary_dilation(union, iterations=1)
        assert scene.sketch[outside].max() == 0  # black canvas, no noise
