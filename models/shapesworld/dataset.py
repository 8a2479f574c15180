"""`ShapesWorldDataset`: scenes rendered on the fly (no disk), as dicts of tensors.

Map-style: item i is scene ``seeds[i]``, identical to ``render_scene(seeds[i], size, objects, domain)``.
Only the requested `keys` are rendered, so an image-only data set costs about a third of a
full scene. Use it with a `DataLoader` (``num_workers >= 1`` keeps rendering off the training
thread; the default collate works for every key, ``caption`` becoming a list of strings).

Keys (H = W = size; per-object entries are padded to 2 objects with -1):

=====================  ==========================================================================
``image``               float32 [3,H,W] in [0,1], the scene in its domain
``image_other_domain``  float32 [3,H,W], the same scene in the other domain
``day_image``           float32 [3,H,W], the scene in `day` (the sketch-to-photo target)
``night_image``         float32 [3,H,W], the scene in `night`
``sketch``              float32 [3,H,W], black canvas with coloured outlines (sketch-to-photo input)
``mask``                float32 [1,H,W], 1 on the sounding object's pixels
``audio``               float32 [16000], 1 s at 16 kHz: the sounding object's signature plus noise
``sounding_index``      int64 [], index of the sounding object
``domain``              int64 [], index into DOMAINS (0 day, 1 night)
``seed``                int64 []
``num_objects``         int64 [], 1 or 2
``shape``               int64 [2], index into SHAPES
``colour``              int64 [2], index into COLOUR_NAMES (spec order)
``size``                int64 [2], index into SIZES (0 small, 1 large)
``centre``              float32 [2,2], (x, y) in px
``bbox``                int64 [2,4], (x0, y0, x1, y1), x1/y1 exclusive
``caption``             str, the canonical caption (``captions[0]``)
=====================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from models.shapesworld import render as _r
from models.shapesworld.captions import caption_for
from models.shapesworld.spec import COLOUR_NAMES, DOMAINS, SHAPES, SIZES, check_size

ALL_KEYS: tuple[str, ...] = (
    "image", "image_other_domain", "day_image", "night_image", "sketch", "mask", "audio",
    "sounding_index", "domain", "seed", "num_objects", "shape", "colour", "size", "centre", "bbox", "caption",
)
LABEL_KEYS: tuple[str, ...] = ("domain", "seed", "num_objects", "shape", "colour", "size", "centre")
MAX_OBJECTS = 2


def image_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float32 [3,H,W] in [0,1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


class ShapesWorldDataset(Dataset):
    """Scenes ``seeds[i]`` rendered on the fly; see the module docstring for the keys."""

    def __init__(self, seeds: Sequence[int], size: int = 64, objects: int | None = None,
                 domain: str | None = None, keys: Sequence[str] | None = None,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.seeds = seeds
        self.size = check_size(size)
        self.objects = objects
        self.domain = domain
        self.keys = tuple(ALL_KEYS if keys is None else keys)
        unknown = set(self.keys) - set(ALL_KEYS)
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}; known: {ALL_KEYS}")
        self.transform = transform
        _r.choose(0, objects, domain)  # validates objects and domain early

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, index: int) -> dict[str, Any]:
        seed = int(self.seeds[index])
        item = render_item(seed, self.size, self.objects, self.domain, self.keys)
        return self.transform(item) if self.transform is not None else item


def render_item(seed: int, size: int, objects: int | None, domain: str | None,
                keys: Sequence[str]) -> dict[str, Any]:
    """Render only what `keys` need of scene `seed` (same pixels as `render_scene`)."""
    want = set(keys)
    count, domain = _r.choose(seed, objects, domain)
    other = _r.other_domain(domain)
    placements = _r._sample_layout(seed, size, count)
    out: dict[str, Any] = {}
    needs_rasters = want & {"image", "image_other_domain", "day_image", "night_image", "sketch", "mask", "bbox"}
    rasters = [_r._rasterise(p, size) for p in placements] if needs_rasters else []
    images: dict[str, np.ndarray] = {}

    def painted(d: str) -> np.ndarray:
        if d not in images:
            images[d] = _r._paint(placements, rasters, size, d, seed)
        return images[d]

    if "image" in want:
        out["image"] = image_tensor(painted(domain))
    if "image_other_domain" in want:
        out["image_other_domain"] = image_tensor(painted(other))
    if "day_image" in want:
        out["day_image"] = image_tensor(painted("day"))
    if "night_image" in want:
        out["night_image"] = image_tensor(painted("night"))
    if "sketch" in want:
        out["sketch"] = image_tensor(_r._sketch(placements, rasters, size, seed))
    scene_objects = None
    if want & {"mask", "bbox", "audio", "sounding_index", "caption"}:
        if rasters:
            scene_objects = [_r._scene_object(p, r, size) for p, r in zip(placements, rasters)]
        else:  # sound and captions need no pixels
            scene_objects = [_r.SceneObject(p.shape, p.colour, p.size, p.extent, p.centre, (0, 0, 0, 0),
                                            np.zeros((0, 0), bool), p.rgb) for p in placements]
    if want & {"mask", "audio", "sounding_index"}:
        sounding, _snr, audio = _r._sound(seed, scene_objects)
        if "mask" in want:
            out["mask"] = torch.from_numpy(scene_objects[sounding].mask[None].astype(np.float32))
        if "audio" in want:
            out["audio"] = torch.from_numpy(audio)
        if "sounding_index" in want:
            out["sounding_index"] = torch.tensor(sounding, dtype=torch.int64)
    if "domain" in want:
        out["domain"] = torch.tensor(DOMAINS.index(domain), dtype=torch.int64)
    if "seed" in want:
        out["seed"] = torch.tensor(seed, dtype=torch.int64)
    if "num_objects" in want:
        out["num_objects"] = torch.tensor(count, dtype=torch.int64)
    for key, names in (("shape", SHAPES), ("colour", COLOUR_NAMES), ("size", SIZES)):
        if key in want:
            values = [names.index(getattr(p, key)) for p in placements]
            out[key] = torch.tensor(values + [-1] * (MAX_OBJECTS - count), dtype=torch.int64)
    if "centre" in want:
        centres = [list(p.centre) for p in placements] + [[-1.0, -1.0]] * (MAX_OBJECTS - count)
        out["centre"] = torch.tensor(centres, dtype=torch.float32)
    if "bbox" in want:
        boxes = [list(o.bbox) for o in scene_objects] + [[-1] * 4] * (MAX_OBJECTS - count)
        out["bbox"] = torch.tensor(boxes, dtype=torch.int64)
    if "caption" in want:
        out["caption"] = caption_for(scene_objects, size)
    return out
