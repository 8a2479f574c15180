"""Caption grammar, relation and position correctness (checked against the pixels), the vocabulary."""

import re

import numpy as np
import pytest

from models.shapesworld import (
    COLOURS, INVERSE_RELATION, RELATIONS, SHAPES, SIZES, VOCABULARY, caption_for, position_phrase,
    reference_captions, relation, render_scene,
)

NOUN = rf"a (?:(?P<{{p}}size>{'|'.join(SIZES)}) )?(?P<{{p}}colour>{'|'.join(COLOURS)}) (?P<{{p}}shape>{'|'.join(SHAPES)})"
ONE = re.compile(NOUN.format(p="a") + r"(?: (?P<pos>on the left|on the right|at the top|at the bottom|in the middle))?")
TWO = re.compile(NOUN.format(p="a") + rf" (?P<rel>{'|'.join(RELATIONS)}) " + NOUN.format(p="b"))


def _pixel_centre(obj):
    ys, xs = np.nonzero(obj.mask)
    return (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2


@pytest.fixture(scope="module")
def scenes():
    return [render_scene(seed) for seed in range(1_000_000, 1_000_400)]


def test_grammar_and_vocabulary(scenes):
    vocabulary = set(VOCABULARY)
    assert list(VOCABULARY) == sorted(set(VOCABULARY))
    assert not any(w.startswith(("<", "[")) for w in VOCABULARY)
    used = set()
    for scene in scenes:
        assert len(scene.captions) == 4 and len(set(scene.captions)) == 4
        for caption in scene.captions:
            assert caption == caption.lower() and re.fullmatch(r"[a-z ]+", caption) and "  " not in caption
            assert set(caption.split()) <= vocabulary
            used.update(caption.split())
            pattern = ONE if len(scene.objects) == 1 else TWO
            assert pattern.fullmatch(caption), caption
    assert used == vocabulary  # every word is reachable, none is spare


def test_canonical_caption_names_every_object(scenes):
    for scene in scenes:
        canonical = scene.captions[0]
        assert canonical == caption_for(scene.objects, scene.size)
        if len(scene.objects) == 1:
            m = ONE.fullmatch(canonical)
            obj = scene.objects[0]
            assert (m["asize"], m["acolour"], m["ashape"]) == (obj.size, obj.colour, obj.shape)
            assert m["pos"] is not None
        else:
            m = TWO.fullmatch(canonical)
            a, b = scene.objects
            assert (m["asize"], m["acolour"], m["ashape"]) == (a.size, a.colour, a.shape)
            assert (m["bsize"], m["bcolour"], m["bshape"]) == (b.size, b.colour, b.shape)


def test_relations_agree_with_the_pixels(scenes):
    checked = 0
    for scene in scenes:
        if len(scene.objects) != 2:
            continue
        (ax, ay), (bx, by) = (_pixel_centre(o) for o in scene.objects)
        dx, dy = ax - bx, ay - by
        if abs(abs(dx) - abs(dy)) < 1.5:
            continue  # too close to a diagonal for a pixel measurement to decide
        expected = ("left of" if dx < 0 else "right of") if abs(dx) > abs(dy) else ("above" if dy < 0 else "below")
        m = TWO.fullmatch(scene.captions[0])
        assert m["rel"] == expected, (scene.seed, scene.captions[0], dx, dy)
        swapped = TWO.fullmatch(scene.captions[1])
        assert swapped["rel"] == INVERSE_RELATION[expected]
        assert swapped["ashape"] == scene.objects[1].shape and swapped["bshape"] == scene.objects[0].shape
        checked += 1
    assert checked > 100


def test_positions_agree_with_the_pixels(scenes):
    seen = set()
    for scene in scenes:
        if len(scene.objects) != 1:
            continue
        x, y = _pixel_centre(scene.objects[0])
        pos = ONE.fullmatch(scene.captions[0])["pos"]
        seen.add(pos)
        thirds = [0 if c < 64 / 3 else 2 if c >= 128 / 3 else 1 for c in (x, y)]
        if any(abs(c - t) < 1 for c in (x, y) for t in (64 / 3, 128 / 3)) or abs(abs(x - 32) - abs(y - 32)) < 1:
            continue  # on a boundary
        if thirds == [1, 1]:
            assert pos == "in the middle"
        elif pos in ("on the left", "on the right"):
            assert thirds[0] == (0 if pos == "on the left" else 2)
            assert thirds[1] == 1 or abs(x - 32) >= abs(y - 32)
        else:
            assert thirds[1] == (0 if pos == "at the top" else 2)
            assert thirds[0] == 1 or abs(y - 32) > abs(x - 32)
    assert len(seen) == 5


def test_hand_cases():
    assert position_phrase((32, 32), 64) == "in the middle"
    assert position_phrase((5, 30), 64) == "on the left"
    assert position_phrase((60, 40), 64) == "on the right"
    assert position_phrase((30, 4), 64) == "at the top"
    assert position_phrase((36, 60), 64) == "at the bottom"
    assert position_phrase((10, 4), 64) == "at the top"  # both outer: the larger offset decides
    assert position_phrase((4, 10), 64) == "on the left"
    assert position_phrase((120, 64), 128) == "on the right"
    assert relation((10, 10), (40, 20)) == "left of" and relation((40, 20), (10, 10)) == "right of"
    assert relation((10, 5), (15, 40)) == "above" and relation((15, 40), (10, 5)) == "below"
    objs = [{"shape": "circle", "colour": "red", "size": "small", "centre": (10, 30)},
            {"shape": "square", "colour": "blue", "size": "large", "centre": (50, 30)}]
    assert reference_captions(objs, 64) == [
        "a small red circle left of a large blue square",
        "a large blue square right of a small red circle",
        "a red circle left of a blue square",
        "a blue square right of a red circle",
    ]
    assert reference_captions(objs[:1], 64) == [
        "a small red circle on the left", "a small red circle", "a red circle on the left", "a red circle",
    ]
    with pytest.raises(ValueError):
        caption_for([])
