"""Captions: lower case, no punctuation (SHAPESWORLD.md, "Captions").

One object:  ``a {size} {colour} {shape} {position}`` where the position phrase
is chosen from the centre's thirds of the canvas:

* both coordinates in the middle third -> ``in the middle``;
* otherwise, of the axes whose coordinate lies in an outer third, the one with the
  larger offset from the canvas centre decides (ties: horizontal):
  ``on the left`` / ``on the right`` / ``at the top`` / ``at the bottom``.

Thirds: a coordinate c is in the left/top third when c < S/3, in the right/bottom
third when c >= 2S/3, in the middle third otherwise (S = canvas size in px).

Two objects A (objects[0]) and B: ``a {size} {colour} {shape} {relation} a {size} {colour} {shape}``
where relation comes from the larger of |dx| and |dy| between the centres (ties:
horizontal): A ``left of`` B when A's centre x < B's, ``above`` when A's centre y < B's
(image y grows downwards).

Reference captions (for BLEU), canonical first:
one object: full, position dropped, sizes dropped, sizes and position dropped;
two objects: A rel B, B inverse-rel A, and both with sizes dropped.

Objects may be `SceneObject`s or mappings with ``shape``, ``colour``, ``size`` and
``centre`` (x, y in px).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from models.shapesworld.spec import INVERSE_RELATION, REFERENCE_SIZE


def _get(obj: Any, key: str) -> Any:
    return obj[key] if isinstance(obj, Mapping) else getattr(obj, key)


def noun_phrase(obj: Any, with_size: bool = True) -> str:
    """``a large red circle`` (or ``a red circle`` without the size)."""
    words = ["a"] + ([_get(obj, "size")] if with_size else []) + [_get(obj, "colour"), _get(obj, "shape")]
    return " ".join(words)


def third(coordinate: float, size: int) -> int:
    """0, 1 or 2: the third of the canvas a coordinate lies in."""
    if coordinate < size / 3:
        return 0
    if coordinate >= 2 * size / 3:
        return 2
    return 1


def position_phrase(centre: Sequence[float], size: int = REFERENCE_SIZE) -> str:
    """The position phrase of a single object whose centre is `centre` (x, y) on a `size` canvas."""
    x, y = float(centre[0]), float(centre[1])
    tx, ty = third(x, size), third(y, size)
    if tx == 1 and ty == 1:
        return "in the middle"
    dx, dy = abs(x - size / 2), abs(y - size / 2)
    if tx != 1 and (ty == 1 or dx >= dy):
        return "on the left" if tx == 0 else "on the right"
    return "at the top" if ty == 0 else "at the bottom"


def relation(a_centre: Sequence[float], b_centre: Sequence[float]) -> str:
    """Where A is relative to B: ``left of``, ``right of``, ``above`` or ``below``."""
    dx = float(a_centre[0]) - float(b_centre[0])
    dy = float(a_centre[1]) - float(b_centre[1])
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def caption_for(objects: Sequence[Any], size: int = REFERENCE_SIZE) -> str:
    """The canonical caption (with sizes, and the position phrase for one object)."""
    return reference_captions(objects, size)[0]


def reference_captions(objects: Sequence[Any], size: int = REFERENCE_SIZE) -> list[str]:
    """Every reference caption of a scene, the canonical one first (see the module docstring)."""
    objects = list(objects)
    if len(objects) == 1:
        (obj,) = objects
        where = position_phrase(_get(obj, "centre"), size)
        return [
            f"{noun_phrase(obj)} {where}",
            noun_phrase(obj),
            f"{noun_phrase(obj, with_size=False)} {where}",
            noun_phrase(obj, with_size=False),
        ]
    if len(objects) == 2:
        a, b = objects
        rel = relation(_get(a, "centre"), _get(b, "centre"))
        inv = INVERSE_RELATION[rel]
        return [
            f"{noun_phrase(a)} {rel} {noun_phrase(b)}",
            f"{noun_phrase(b)} {inv} {noun_phrase(a)}",
            f"{noun_phrase(a, False)} {rel} {noun_phrase(b, False)}",
            f"{noun_phrase(b, False)} {inv} {noun_phrase(a, False)}",
        ]
    raise ValueError(f"a scene has 1 or 2 objects, got {len(objects)}")
