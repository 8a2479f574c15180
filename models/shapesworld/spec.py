"""The constants of ShapesWorld, exactly as ../../../shared/SHAPESWORLD.md states them.

Every number a renderer needs lives here, in the spec's order, so that code and
tests read the same values. Lengths are given for the reference 64 px canvas;
`scale_px` converts them to another canvas size (32..256 px are accepted).
"""

from __future__ import annotations

import math

# --- Objects ----------------------------------------------------------------
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (230, 210, 40),
    "green": (40, 170, 60),
    "blue": (45, 85, 215),
    "purple": (145, 60, 195),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
COLOUR_JITTER = 12  # each channel of an object's colour is jittered by up to +-12
SIZES: tuple[str, ...] = ("small", "large")
# Extent (diameter of a circle, side of a square / triangle / cross), inclusive, on a 64 px canvas.
SIZE_RANGES_PX: dict[str, tuple[int, int]] = {"small": (10, 15), "large": (20, 28)}
CROSS_ARM_FRACTION = 1.0 / 3.0  # arm width of the plus sign as a fraction of its extent
TRIANGLE_HEIGHT_FRACTION = math.sqrt(3.0) / 2.0  # equilateral, apex up: height = side * sqrt(3) / 2
MARGIN_PX = 2  # every object lies inside the canvas with this margin (at least; scaled up on larger canvases)
MIN_GAP_PX = 2  # two objects are at least this far apart (bounding boxes; scaled likewise)

# --- Canvas and domains -----------------------------------------------------
REFERENCE_SIZE = 64
MIN_SIZE, MAX_SIZE = 32, 256
DOMAINS: tuple[str, ...] = ("day", "night")
BACKGROUND_RANGES: dict[str, tuple[int, int]] = {"day": (185, 245), "night": (5, 45)}  # per channel, inclusive
NOISE_SIGMA_MAX = 8.0  # per-pixel Gaussian noise, sigma drawn uniformly in [0, 8] per image
NIGHT_BRIGHTNESS = (0.6, 0.8)  # night objects: body at this fraction of the colour
NIGHT_RIM_PX = (1, 3)  # ... plus a lighter rim this wide (inclusive, on 64 px), inside the object's outline
NIGHT_RIM_WHITE_MIX = 0.2  # rim colour = full colour mixed 20 % towards white
SKETCH_OUTLINE_PX = (1, 2)  # sketch: 1-2 px outline in the object's colour on a black canvas

# --- Captions ---------------------------------------------------------------
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
INVERSE_RELATION: dict[str, str] = {
    "left of": "right of", "right of": "left of", "above": "below", "below": "above",
}
POSITIONS: tuple[str, ...] = ("on the left", "on the right", "at the top", "at the bottom", "in the middle")

# --- Sound ------------------------------------------------------------------
SAMPLE_RATE_HZ = 16000
CLIP_SECONDS = 1.0
CLIP_SAMPLES = int(SAMPLE_RATE_HZ * CLIP_SECONDS)
FREQUENCIES_HZ: dict[str, float] = {
    "red": 220.0, "orange": 277.0, "yellow": 330.0, "green": 392.0, "blue": 466.0, "purple": 523.0,
}
WAVEFORMS: dict[str, str] = {"circle": "sine", "square": "square", "triangle": "triangle", "cross": "sawtooth"}
AMPLITUDES: dict[str, float] = {"small": 0.3, "large": 0.6}
FADE_SECONDS = 0.010
SNR_DB_RANGE = (10.0, 30.0)

# --- Splits -----------------------------------------------------------------
TRAIN_SEEDS = range(0, 1_000_000)
EVAL_SEEDS = range(1_000_000, 2_000_000)


def _caption_words() -> tuple[str, ...]:
    words = {"a"} | set(SHAPES) | set(COLOURS) | set(SIZES)
    for phrase in RELATIONS + POSITIONS:
        words.update(phrase.split())
    return tuple(sorted(words))


VOCABULARY: tuple[str, ...] = _caption_words()


def check_size(size: int) -> int:
    """Validate a canvas size (32..256 px) and return it as an int."""
    if isinstance(size, bool) or int(size) != size or not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise ValueError(f"canvas size must be an integer in {MIN_SIZE}..{MAX_SIZE}, got {size!r}")
    return int(size)


def scale_px(length_px: float, size: int) -> float:
    """A length given on the 64 px reference canvas, on a canvas of `size` px."""
    return length_px * size / REFERENCE_SIZE


def extent_range_px(size_name: str, size: int) -> tuple[int, int]:
    """Inclusive integer extent range of `small` / `large` on a canvas of `size` px."""
    lo, hi = SIZE_RANGES_PX[size_name]
    return max(1, round(scale_px(lo, size))), max(1, round(scale_px(hi, size)))


def margin_px(size: int) -> int:
    """Margin between objects and the canvas edge: 2 px, scaled up on canvases larger than 64 px."""
    return max(MARGIN_PX, round(scale_px(MARGIN_PX, size)))


def min_gap_px(size: int) -> int:
    """Smallest gap between two objects' bounding boxes: 2 px, scaled up on larger canvases."""
    return max(MIN_GAP_PX, round(scale_px(MIN_GAP_PX, size)))


def box_height_px(shape: str, extent: int) -> int:
    """Height of a shape's box for an integer extent: the triangle's is its height rounded to whole
    pixels (so its base lies on a pixel edge), every other shape's box is square."""
    return max(1, round(extent * TRIANGLE_HEIGHT_FRACTION)) if shape == "triangle" else int(extent)
