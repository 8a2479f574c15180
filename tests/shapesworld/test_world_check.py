"""The built-ins' out-of-world check, measured: held-out scenes pass, real photographs are flagged.

Scenes: 400 held-out seeds of our renderer (both domains, one or two objects), 100 more at
canvas sizes 32, 128 and 256, and 100 drawn by another renderer that follows the spec
(tests/captioning/test_other_renderer.py). Photographs: every photograph scikit-image
bundles (no download), whole and as five crops each (four quadrants and the centre).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from models.shapesworld import EVAL_SEEDS, render_scene
from models.shapesworld.world_check import (
    PALETTE_TOLERANCE, _fits_palette, _segments, outside_reason, outside_reasons, sketch_outside_reason, warning_for,
    warnings_for,
)
from tests.captioning.test_other_renderer import draw_scene

# skimage.data's bundled photographs (the rest of its samples are drawings, text, or downloads).
PHOTOGRAPHS = ("astronaut", "camera", "chelsea", "coffee", "coins", "hubble_deep_field", "immunohistochemistry",
               "moon", "retina", "rocket", "clock", "brick", "grass", "gravel")


def photographs() -> list[tuple[str, np.ndarray]]:
    data = pytest.importorskip("skimage.data")
    out = []
    for name in PHOTOGRAPHS:
        image = getattr(data, name)()
        image = np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3]
        h, w = image.shape[:2]
        crops = [image, image[:h // 2, :w // 2], image[:h // 2, w // 2:], image[h // 2:, :w // 2],
                 image[h // 2:, w // 2:], image[h // 4:3 * h // 4, w // 4:3 * w // 4]]
        out += [(f"{name}[{i}]", np.ascontiguousarray(c)) for i, c in enumerate(crops)]
    return out


def test_held_out_scenes_are_not_flagged():
    scenes = [render_scene(seed).image for seed in EVAL_SEEDS[:400]]
    scenes += [render_scene(seed, size=size).image for size in (32, 128, 256) for seed in EVAL_SEEDS[400:500]]
    rng = np.random.default_rng(5)
    scenes += [draw_scene(rng, 1 + i % 2, night=i % 3 == 0)[0] for i in range(100)]
    flagged = [i for i, scene in enumerate(scenes) if outside_reason(scene)]
    rate = 1 - len(flagged) / len(scenes)
    print(f"ShapesWorld scenes unflagged: {rate:.1%} of {len(scenes)}")
    assert rate >= 0.95


def test_real_photographs_are_flagged():
    found = photographs()
    missed = [name for name, photo in found if not outside_reason(photo)]
    rate = 1 - len(missed) / len(found)
    print(f"photographs flagged: {rate:.1%} of {len(found)}; missed: {missed}")
    assert len(found) >= 60 and rate >= 0.95


def test_held_out_sketches_pass_and_photographs_and_scenes_are_flagged_as_sketches():
    """sketch2photo's input check: sketches of every canvas size pass; photographs and rendered scenes
    (day and night: filled, noisy, not a flat black canvas) are flagged."""
    sketches = [render_scene(seed, size=size).sketch for size in (32, 64, 128, 256) for seed in EVAL_SEEDS[:150]]
    passed = 1 - sum(bool(sketch_outside_reason(s)) for s in sketches) / len(sketches)
    others = [photo for _, photo in photographs()]
    others += [render_scene(seed, domain=domain).image for domain in ("day", "night") for seed in EVAL_SEEDS[:100]]
    flagged = sum(bool(sketch_outside_reason(o)) for o in others) / len(others)
    print(f"sketches unflagged: {passed:.1%} of {len(sketches)}; photographs and scenes flagged: {flagged:.1%} "
          f"of {len(others)}")
    assert passed >= 0.95 and flagged >= 0.95


def test_day2night_and_night2day_name_a_scene_of_the_other_domain():
    day, night = (render_scene(EVAL_SEEDS[3], domain=d).image for d in ("day", "night"))
    assert outside_reason(day, "day") == "" and outside_reason(night, "night") == ""
    assert "night scene" in outside_reason(night, "day") and "day scene" in outside_reason(day, "night")
    (warning,) = warning_for("day2night", night, "day")
    assert "a ShapesWorld day scene" in warning and "'day2night'" in warning
    assert warning_for("sketch2photo", render_scene(EVAL_SEEDS[3]).sketch, "sketch") == []
    assert "a ShapesWorld sketch" in warning_for("sketch2photo", day, "sketch")[0]


def test_the_warning_names_the_model_and_the_reason():
    (warning,) = warning_for("captioning", np.full((64, 64, 3), (30, 120, 200), np.uint8))
    assert "'captioning'" in warning and "ShapesWorld" in warning and "neither" in warning
    assert warning_for("captioning", render_scene(EVAL_SEEDS[0]).image) == []


def test_palette_fit_is_the_point_to_segment_distance():
    """The compiled fit (a body colour settles a point first, then the segments) against the plain
    definition: a point fits when its distance to the nearest point of some segment is within
    PALETTE_TOLERANCE, computed here in float64 with numpy over every segment."""
    rng = np.random.default_rng(11)
    backgrounds = [np.array([215.0, 200.0, 230.0]), np.array([20.0, 30.0, 12.0]), rng.uniform(0, 255, 3)]
    for seed, background in zip(EVAL_SEEDS, backgrounds):
        scene = np.asarray(render_scene(seed).image, np.float64).reshape(-1, 3)
        points = np.concatenate([scene, rng.uniform(0, 255, (400, 3)), rng.integers(0, 256, (100, 3))])
        starts, ends = _segments(background)
        direction = ends - starts
        offset = points[:, None, :] - starts
        t = np.clip((offset * direction).sum(-1) / (direction ** 2).sum(-1), 0.0, 1.0)
        distance = np.linalg.norm(offset - t[..., None] * direction, axis=-1).min(1)
        clear = np.abs(distance - PALETTE_TOLERANCE) > 1e-6  # a point on the boundary may go either way
        expected = distance <= PALETTE_TOLERANCE
        assert 0 < expected.sum() < len(points)
        np.testing.assert_array_equal(_fits_palette(points, background)[clear], expected[clear])
        # Each point with its own background (how a batch's pictures are checked together).
        own = np.broadcast_to(background, points.shape)
        np.testing.assert_array_equal(_fits_palette(points, own), _fits_palette(points, background))
    assert len(starts) == 6 * (2 * 4 + 1)  # per colour: background->body and rim->body at 4 brightnesses, background->rim


def _drawn(background, squares, size: int = 64) -> np.ndarray:
    """A flat canvas with filled squares: ((x, y, side), colour) each."""
    canvas = np.full((size, size, 3), background, np.uint8)
    for (x, y, side), colour in squares:
        canvas[y:y + side, x:x + side] = colour
    return canvas


def test_a_batch_decides_each_picture_as_it_would_alone():
    """The model thread checks a batch's pictures together (outside_reasons): each picture gets the reason
    it gets alone, whatever its batch mates are (nothing leaks between pictures: backgrounds, object
    labels, colour points), and the batch reaches every stage of the check."""
    day, night = (215, 205, 225), (25, 30, 20)
    pictures = [render_scene(seed, domain=domain).image for seed in EVAL_SEEDS[:12] for domain in ("day", "night")]
    pictures += [photo for _, photo in photographs()[::7]]
    pictures += [
        _drawn((128, 128, 128), [((20, 20, 12), (215, 40, 40))]),                     # neither day nor night
        _drawn(day, [((3, 3, 58), (45, 85, 215))]),                                   # mostly object
        _drawn(day, []),                                                              # no object
        _drawn(day, [((5, 5, 8), (215, 40, 40)), ((30, 30, 8), (40, 170, 60)), ((50, 10, 8), (45, 85, 215))]),
        _drawn(night, [((20, 20, 16), (120, 250, 250))]),                             # a colour of no body
        _drawn(night, [((20, 20, 16), (145, 60, 195))]),                              # a night scene
        render_scene(EVAL_SEEDS[20], size=128).image, Image.fromarray(render_scene(EVAL_SEEDS[21]).image),
    ]
    rng = np.random.default_rng(2)
    order = rng.permutation(len(pictures))
    for domain in (None, "day"):
        alone = [outside_reason(picture, domain) for picture in pictures]
        together = outside_reasons([pictures[i] for i in order], domain)
        assert [together[list(order).index(i)] for i in range(len(pictures))] == alone
        assert outside_reasons(pictures[:0], domain) == []
    stages = ("edges", "neither", "not background", "no object", "separate things", "have ShapesWorld's colours")
    reasons = outside_reasons(pictures, "day")
    for stage in (*stages, "night scene"):
        assert any(stage in reason for reason in reasons), stage
    assert sum(not reason for reason in outside_reasons(pictures)) >= 24 + 2
    assert warnings_for("captioning", pictures) == [warning_for("captioning", picture) for picture in pictures]


def test_compiled_labelling_counts_things_as_scipy_does():
    """The compiled check's 4-connected labelling (specks under MIN_OBJECT_PX ignored) against
    scipy.ndimage.label on random masks of every density, and on a mask with one long winding thing."""
    from models.shapesworld.world_check import _objects
    from models.shapesworld.world_check_kernels import _objects_in

    rng = np.random.default_rng(4)
    labels, stack = np.zeros((64, 64), np.int32), np.zeros(64 * 64, np.int64)
    for density in (0.0, 0.05, 0.2, 0.4, 0.55, 0.7, 1.0):
        for _ in range(10):
            mask = rng.random((64, 64)) < density
            assert _objects_in(mask, labels, stack) == _objects(mask)
    winding = np.zeros((64, 64), bool)
    winding[::2] = True
    winding[1::4, -1] = winding[3::4, 0] = True
    assert _objects_in(winding, labels, stack) == _objects(winding) == 1
