"""Rendering: one seed -> one `Scene` with every modality (SHAPESWORLD.md).

Determinism: each scene draws from independent random streams keyed by its seed,
so a scene does not depend on which other parts are rendered, nor on numpy's
global state:

* choice (seed): whether the scene has 1 or 2 objects and its domain, when the
  caller leaves them open (50/50 each);
* layout (seed, number of objects): shapes, colours (with +-12 jitter), sizes,
  extents and positions;
* appearance (seed, domain): background, noise, night brightness and rim width,
  so ``render_scene(s, domain="night").image`` equals
  ``render_scene(s, domain="day").image_other_domain``;
* sketch (seed) and sound (seed, number of objects).

Geometry, in canvas pixels with x to the right and y down, pixel (i, j) covering
[j, j+1) x [i, i+1): every object has an integer extent e and an integer box
corner, so on the reference 64 px canvas edges of squares fall on pixel edges.
circle: diameter e; square: side e; triangle: apex up, base e, height
round(e * sqrt(3) / 2) (equilateral up to rounding); cross: plus sign in an e x e
box, arm width e / 3. An object's `centre` is the centre of that box. Pixels are
anti-aliased by 4x4 supersampling; an object's `mask` is the pixels it covers at
least half, `bbox` the tight box of its mask (x0, y0, x1, y1, x1/y1 exclusive).
Two objects' boxes are at least 2 px apart, and every box lies at least 2 px inside
the canvas. The two objects of a scene differ in shape or colour, so a sound
always tells which of them is sounding.

Day: background colour uniform per channel in 185..245, objects in their colour.
Night: background 5..45, object body at 0.6..0.8 of its colour's brightness, plus a
1-3 px rim (inside the object's outline) in its colour mixed 20 % towards white.
Both: per-pixel Gaussian noise on the whole image, sigma uniform in [0, 8].
Sketch: black canvas, each object's 1-2 px inner outline in its colour, no noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.shapesworld.audio import noisy_clip, object_signature
from models.shapesworld.captions import reference_captions
from models.shapesworld.spec import (
    BACKGROUND_RANGES, CLIP_SAMPLES, COLOUR_JITTER, COLOURS, CROSS_ARM_FRACTION, DOMAINS,
    NIGHT_BRIGHTNESS, NIGHT_RIM_PX, NIGHT_RIM_WHITE_MIX, NOISE_SIGMA_MAX, SHAPES, SIZES,
    SKETCH_OUTLINE_PX, SNR_DB_RANGE, box_height_px, check_size, extent_range_px, margin_px,
    min_gap_px, scale_px,
)

SUPERSAMPLE = 4
# Random stream identifiers (part of each stream's SeedSequence entropy; never change them).
_CHOICE, _LAYOUT, _APPEARANCE, _SKETCH, _SOUND = 1, 2, 3, 4, 5


def _rng(seed: int, stream: int, *extra: int) -> np.random.Generator:
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"a scene seed is a non-negative integer, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream, *extra]))


@dataclass(frozen=True, eq=False)
class SceneObject:
    """One object of a scene. `centre` is (x, y) in px; `bbox` (x0, y0, x1, y1) is exclusive at x1/y1;
    `mask` is bool HxW; `rgb` is the jittered colour it is drawn in."""

    shape: str
    colour: str
    size: str
    extent_px: int
    centre: tuple[float, float]
    bbox: tuple[int, int, int, int]
    mask: np.ndarray = field(repr=False)
    rgb: tuple[int, int, int] = (0, 0, 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": self.shape, "colour": self.colour, "size": self.size, "extent_px": self.extent_px,
            "centre": [float(self.centre[0]), float(self.centre[1])], "bbox": [int(v) for v in self.bbox],
            "rgb": [int(v) for v in self.rgb],
        }


@dataclass(eq=False)
class Scene:
    """Everything one seed yields. Images are uint8 HxWx3; `mask` is the sounding object's bool HxW mask;
    `audio` is float32 (16000,) at 16 kHz; `captions[0]` is the canonical caption."""

    seed: int
    size: int
    domain: str
    objects: list[SceneObject]
    image: np.ndarray = field(repr=False)
    image_other_domain: np.ndarray = field(repr=False)
    sketch: np.ndarray = field(repr=False)
    captions: list[str]
    audio: np.ndarray = field(repr=False)
    sounding_index: int
    mask: np.ndarray = field(repr=False)
    snr_db: float = 0.0

    @property
    def other_domain(self) -> str:
        return other_domain(self.domain)

    @property
    def day_image(self) -> np.ndarray:
        """The scene rendered in `day` (the sketch-to-photo target)."""
        return self.image if self.domain == "day" else self.image_other_domain

    @property
    def night_image(self) -> np.ndarray:
        return self.image if self.domain == "night" else self.image_other_domain

    @property
    def sounding_object(self) -> SceneObject:
        return self.objects[self.sounding_index]


def other_domain(domain: str) -> str:
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    return DOMAINS[1 - DOMAINS.index(domain)]


# --- Layout -----------------------------------------------------------------

@dataclass(frozen=True)
class _Placement:
    shape: str
    colour: str
    size: str
    extent: int
    rgb: tuple[int, int, int]
    x0: float
    y0: float
    w: float
    h: float

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.w / 2, self.y0 + self.h / 2)


def _box_gap(a: _Placement, b: _Placement) -> float:
    return max(b.x0 - (a.x0 + a.w), a.x0 - (b.x0 + b.w), b.y0 - (a.y0 + a.h), a.y0 - (b.y0 + b.h))


def choose(seed: int, objects: int | None = None, domain: str | None = None) -> tuple[int, str]:
    """The number of objects and the domain of scene `seed`, drawing whichever the caller leaves open."""
    rng = _rng(seed, _CHOICE)
    two, night = rng.random() < 0.5, rng.random() < 0.5
    count = (2 if two else 1) if objects is None else objects
    if count not in (1, 2):
        raise ValueError(f"objects must be 1, 2 or None (mixed), got {objects!r}")
    if domain is None:
        domain = "night" if night else "day"
    other_domain(domain)  # validates
    return count, domain


def _sample_layout(seed: int, size: int, count: int) -> list[_Placement]:
    rng = _rng(seed, _LAYOUT, count)
    margin, gap = margin_px(size), min_gap_px(size)
    while True:  # restart the whole layout when an object finds no room (rare; deterministic)
        placed: list[_Placement] = []
        for _ in range(count):
            while True:
                shape = SHAPES[int(rng.integers(len(SHAPES)))]
                colour = tuple(COLOURS)[int(rng.integers(len(COLOURS)))]
                if all((p.shape, p.colour) != (shape, colour) for p in placed):
                    break
            size_name = SIZES[int(rng.integers(len(SIZES)))]
            lo, hi = extent_range_px(size_name, size)
            extent = int(rng.integers(lo, hi + 1))
            jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
            rgb = tuple(int(v) for v in np.clip(np.asarray(COLOURS[colour]) + jitter, 0, 255))
            w, h = extent, box_height_px(shape, extent)
            for _attempt in range(50):
                x0 = int(rng.integers(margin, size - margin - w + 1))
                y0 = int(rng.integers(margin, size - margin - h + 1))
                candidate = _Placement(shape, colour, size_name, extent, rgb, x0, y0, w, h)
                if all(_box_gap(p, candidate) >= gap for p in placed):
                    placed.append(candidate)
                    break
            else:
                break
        if len(placed) == count:
            return placed


def _placement_from_spec(spec: Any, size: int) -> _Placement:
    """A `SceneObject` or a mapping with shape, colour, centre and extent_px (or size), optional rgb."""
    get = (lambda k, d=None: spec.get(k, d)) if isinstance(spec, Mapping) else (lambda k, d=None: getattr(spec, k, d))
    shape, colour = get("shape"), get("colour")
    if shape not in SHAPES or colour not in COLOURS:
        raise ValueError(f"unknown shape/colour in object spec {spec!r}")
    size_name = get("size")
    extent = get("extent_px")
    if extent is None:
        if size_name not in SIZES:
            raise ValueError(f"object spec needs extent_px or size: {spec!r}")
        lo, hi = extent_range_px(size_name, size)
        extent = (lo + hi) // 2
    extent = int(extent)
    if size_name is None:
        size_name = "small" if extent <= extent_range_px("small", size)[1] else "large"
    rgb = get("rgb") or COLOURS[colour]
    cx, cy = (float(v) for v in get("centre"))
    w, h = extent, box_height_px(shape, extent)
    return _Placement(shape, colour, size_name, extent, tuple(int(v) for v in rgb), cx - w / 2, cy - h / 2, w, h)


# --- Rasterising ------------------------------------------------------------

@dataclass
class _Raster:
    """An object's supersampled inner distance (px, positive inside) over a canvas region."""

    rows: slice
    cols: slice
    dist: np.ndarray

    def coverage(self, band: float | None = None) -> np.ndarray:
        """Fraction of each pixel inside the object (or inside its inner band `band` px wide)."""
        inside = self.dist > 0
        if band is not None:
            inside &= self.dist < band
        h, w = self.rows.stop - self.rows.start, self.cols.stop - self.cols.start
        return inside.reshape(h, SUPERSAMPLE, w, SUPERSAMPLE).mean(axis=(1, 3), dtype=np.float32)


def _rect_dist(x, y, x0, y0, x1, y1):
    return np.minimum(np.minimum(x - x0, x1 - x), np.minimum(y - y0, y1 - y))


def _inner_distance(p: _Placement, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    cx, cy = p.centre
    x1, y1 = p.x0 + p.w, p.y0 + p.h
    if p.shape == "circle":
        return p.w / 2 - np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    if p.shape == "square":
        return _rect_dist(x, y, p.x0, p.y0, x1, y1)
    if p.shape == "cross":
        # Inside: the union of two bars. Its inner distance is the distance to the complement: the
        # outside of the e x e box or one of the four corner squares (round at the concave corners).
        arm = p.w * CROSS_ARM_FRACTION
        a0, a1, b0, b1 = cx - arm / 2, cx + arm / 2, cy - arm / 2, cy + arm / 2
        bars = np.maximum(_rect_dist(x, y, p.x0, b0, x1, b1), _rect_dist(x, y, a0, p.y0, a1, y1))
        inner = _rect_dist(x, y, p.x0, p.y0, x1, y1)
        for rx0, rx1 in ((p.x0, a0), (a1, x1)):
            for ry0, ry1 in ((p.y0, b0), (b1, y1)):
                dx = np.maximum(np.maximum(rx0 - x, x - rx1), 0)
                dy = np.maximum(np.maximum(ry0 - y, y - ry1), 0)
                inner = np.minimum(inner, np.sqrt(dx * dx + dy * dy))
        return np.where(bars > 0, inner, bars)
    if p.shape == "triangle":
        vertices = [(cx, p.y0), (x1, y1), (p.x0, y1)]  # apex, bottom right, bottom left
        centroid = (sum(v[0] for v in vertices) / 3, sum(v[1] for v in vertices) / 3)
        dist = None
        for (ax, ay), (bx, by) in zip(vertices, vertices[1:] + vertices[:1]):
            length = math.hypot(bx - ax, by - ay)
            sign = 1.0 if ((bx - ax) * (centroid[1] - ay) - (by - ay) * (centroid[0] - ax)) > 0 else -1.0
            edge = sign * ((bx - ax) * (y - ay) - (by - ay) * (x - ax)) / length
            dist = edge if dist is None else np.minimum(dist, edge)
        return dist
    raise ValueError(f"unknown shape {p.shape!r}")


def _rasterise(p: _Placement, size: int) -> _Raster:
    c0, c1 = max(0, math.floor(p.x0) - 1), min(size, math.ceil(p.x0 + p.w) + 1)
    r0, r1 = max(0, math.floor(p.y0) - 1), min(size, math.ceil(p.y0 + p.h) + 1)
    offsets = (np.arange(SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE
    xs = (np.arange(c0, c1, dtype=np.float32)[:, None] + offsets).reshape(1, -1)
    ys = (np.arange(r0, r1, dtype=np.float32)[:, None] + offsets).reshape(-1, 1)
    return _Raster(slice(r0, r1), slice(c0, c1), _inner_distance(p, xs, ys).astype(np.float32))


def _scene_object(p: _Placement, raster: _Raster, size: int) -> SceneObject:
    mask = np.zeros((size, size), dtype=bool)
    mask[raster.rows, raster.cols] = raster.coverage() >= 0.5
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    bbox = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1) if rows.size else (0, 0, 0, 0)
    return SceneObject(p.shape, p.colour, p.size, p.extent, p.centre, bbox, mask, p.rgb)


# --- Painting ---------------------------------------------------------------

def _paint(placements: Sequence[_Placement], rasters: Sequence[_Raster], size: int, domain: str,
           seed: int) -> np.ndarray:
    other_domain(domain)  # validates
    rng = _rng(seed, _APPEARANCE, DOMAINS.index(domain))
    lo, hi = BACKGROUND_RANGES[domain]
    background = rng.integers(lo, hi + 1, size=3).astype(np.float32)
    sigma = rng.uniform(0.0, NOISE_SIGMA_MAX)
    canvas = np.empty((size, size, 3), dtype=np.float32)
    canvas[:] = background
    for p, raster in zip(placements, rasters):
        brightness = rng.uniform(*NIGHT_BRIGHTNESS)
        rim_px = int(rng.integers(NIGHT_RIM_PX[0], NIGHT_RIM_PX[1] + 1))
        rgb = np.asarray(p.rgb, dtype=np.float32)
        cover = raster.coverage()[..., None]
        region = canvas[raster.rows, raster.cols]
        if domain == "day":
            region[:] = region * (1 - cover) + rgb * cover
        else:
            rim_cover = raster.coverage(band=max(1.0, scale_px(rim_px, size)))[..., None]
            rim_rgb = rgb + NIGHT_RIM_WHITE_MIX * (255 - rgb)
            region[:] = region * (1 - cover) + rgb * brightness * (cover - rim_cover) + rim_rgb * rim_cover
    canvas += rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(sigma)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def _sketch(placements: Sequence[_Placement], rasters: Sequence[_Raster], size: int, seed: int) -> np.ndarray:
    rng = _rng(seed, _SKETCH)
    canvas = np.zeros((size, size, 3), dtype=np.float32)
    for p, raster in zip(placements, rasters):
        width = int(rng.integers(SKETCH_OUTLINE_PX[0], SKETCH_OUTLINE_PX[1] + 1))
        cover = raster.coverage(band=max(1.0, scale_px(width, size)))[..., None]
        region = canvas[raster.rows, raster.cols]
        region[:] = region * (1 - cover) + np.asarray(p.rgb, dtype=np.float32) * cover
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def _sound(seed: int, objects: Sequence[SceneObject]) -> tuple[int, float, np.ndarray]:
    rng = _rng(seed, _SOUND, len(objects))
    index = int(rng.integers(len(objects)))
    snr_db = float(rng.uniform(*SNR_DB_RANGE))
    noise = rng.standard_normal(CLIP_SAMPLES)
    obj = objects[index]
    return index, snr_db, noisy_clip(object_signature(obj.shape, obj.colour, obj.size), snr_db, noise)


# --- Public entry points ----------------------------------------------------

def render_scene(seed: int, size: int = 64, objects: int | None = None, domain: str | None = None) -> Scene:
    """Render scene `seed` on a `size` px canvas with 1 or 2 `objects` (None: 50/50 by seed) in `domain`
    (`day`, `night`, or None: 50/50 by seed)."""
    size = check_size(size)
    count, domain = choose(seed, objects, domain)
    placements = _sample_layout(seed, size, count)
    rasters = [_rasterise(p, size) for p in placements]
    scene_objects = [_scene_object(p, r, size) for p, r in zip(placements, rasters)]
    sounding, snr_db, audio = _sound(seed, scene_objects)
    return Scene(
        seed=int(seed), size=size, domain=domain, objects=scene_objects,
        image=_paint(placements, rasters, size, domain, seed),
        image_other_domain=_paint(placements, rasters, size, other_domain(domain), seed),
        sketch=_sketch(placements, rasters, size, seed),
        captions=reference_captions(scene_objects, size),
        audio=audio, sounding_index=sounding, mask=scene_objects[sounding].mask.copy(), snr_db=snr_db,
    )


def render_objects(objects_spec: Sequence[Any], size: int = 64, domain: str = "day", seed: int = 0) -> np.ndarray:
    """Render a given object layout: uint8 HxWx3. Each spec is a `SceneObject` or a mapping with
    ``shape``, ``colour``, ``centre`` (x, y px) and ``extent_px`` (or ``size``: the middle of its range),
    optionally ``rgb`` (default: the nominal colour). `seed` draws background, noise, night brightness
    and rim; `domain` may also be ``sketch``."""
    size = check_size(size)
    placements = [_placement_from_spec(spec, size) for spec in objects_spec]
    rasters = [_rasterise(p, size) for p in placements]
    if domain == "sketch":
        return _sketch(placements, rasters, size, seed)
    return _paint(placements, rasters, size, domain, seed)


def object_masks(objects_spec: Sequence[Any], size: int = 64) -> list[np.ndarray]:
    """The bool masks (pixels covered at least half) of a given object layout."""
    size = check_size(size)
    placements = [_placement_from_spec(spec, size) for spec in objects_spec]
    return [_scene_object(p, _rasterise(p, size), size).mask for p in placements]
