"""Training and evaluation pairs: ShapesWorld images, the caption each is paired with, and which
captions in a batch describe which images (the false negatives a contrastive loss must not push away).

A scene's reference captions (canonical; sizes dropped; for one object the position
dropped; for two objects "B <inverse> A") all describe it. Training pairs a scene with
its canonical caption half of the time and with a random other reference otherwise,
so that "a red circle" and "B right of A" land next to the image too. Evaluation
always uses the canonical caption.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.shapesworld import COLOUR_NAMES, SHAPES, SIZES, reference_captions
from models.shapesworld.dataset import render_item

_KEYS = ("image", "num_objects", "shape", "colour", "size", "centre")


@dataclass
class Pairs:
    seeds: list[int]
    images: torch.Tensor  # [N,3,S,S] in [0,1]
    references: list[list[str]]  # per scene, canonical first
    num_objects: list[int]

    @property
    def captions(self) -> list[str]:
        return [r[0] for r in self.references]


def references_of(item: dict) -> list[str]:
    """Reference captions of a rendered item (keys shape, colour, size, centre, num_objects)."""
    count = int(item["num_objects"])
    objects = [{"shape": SHAPES[int(item["shape"][k])], "colour": COLOUR_NAMES[int(item["colour"][k])],
                "size": SIZES[int(item["size"][k])], "centre": item["centre"][k].tolist()} for k in range(count)]
    return reference_captions(objects, item["image"].shape[-1])


def render_pairs(seeds: Sequence[int], size: int = 64, objects: int | None = None) -> Pairs:
    """Scenes `seeds` (mixed object counts and domains unless `objects` is given)."""
    items = [render_item(int(s), size, objects, None, _KEYS) for s in seeds]
    return Pairs([int(s) for s in seeds], torch.stack([i["image"] for i in items]),
                 [references_of(i) for i in items], [int(i["num_objects"]) for i in items])


def training_captions(references: Sequence[Sequence[str]], rng: np.random.Generator,
                      canonical_share: float = 0.5) -> list[str]:
    """The canonical caption with probability `canonical_share`, else another reference, per scene."""
    out = []
    for refs in references:
        if len(refs) == 1 or rng.random() < canonical_share:
            out.append(refs[0])
        else:
            out.append(refs[int(rng.integers(1, len(refs)))])
    return out


def describes(texts: Sequence[str], references: Sequence[Sequence[str]]) -> torch.Tensor:
    """bool [images, texts]: text j is one of image i's reference captions (the diagonal included)."""
    index: dict[str, list[int]] = {}
    for j, text in enumerate(texts):
        index.setdefault(text, []).append(j)
    out = torch.zeros(len(references), len(texts), dtype=torch.bool)
    for i, refs in enumerate(references):
        for ref in set(refs):
            for j in index.get(ref, ()):
                out[i, j] = True
    return out

