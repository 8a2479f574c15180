"""Does a picture plausibly come from ShapesWorld? The built-in models know nothing else.

The built-ins answer any picture with ShapesWorld words ("a large orange cross ..."),
confidently, so they flag what is plainly outside their world instead of pretending.
The check reads the picture the way ShapesWorld draws one (../../../shared/SHAPESWORLD.md):
a plain background (day: each channel 185..245; night: 5..45; per-pixel noise of
sigma <= 8) that fills the border and most of the canvas, with one or two flat objects
whose pixels are one of six colours (night: dimmed to 0.6..0.8, with a lighter rim),
or a blend of such a colour with the background at anti-aliased edges; nothing else.

`outside_reason(pixels)` returns why a picture is not such a scene, or "" when it may be
(optionally: not a scene of the given domain, for day2night and night2day);
`sketch_outside_reason` does the same for sketch2photo's input, a sketch.
It works on the picture resized to 64 x 64 (scenes are drawn to scale) and takes about 0.1 ms
(0.07 ms per picture over a batch; its loops are compiled, world_check_kernels.py). Its measured
rates (tests/shapesworld/test_world_check.py): held-out scenes of both domains and another
renderer pass, real photographs are flagged.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from models.shapesworld.spec import COLOURS, NIGHT_RIM_WHITE_MIX

SIZE = 64
BORDER_PX = 2
# A background pixel is within this of the background colour (noise sigma 8, so ~4 sigma).
BACKGROUND_TOLERANCE = 32
# A foreground pixel lies within this distance (RGB, L2) of a blend between the background
# and a ShapesWorld colour (colour jitter +-12 per channel, noise, resampling).
PALETTE_TOLERANCE = 42
# Night objects are drawn at 0.6..0.8 of their colour's brightness, their rims lighter.
BRIGHTNESS = (0.6, 0.7, 0.8, 1.0)
MIN_BORDER_BACKGROUND = 0.85
MAX_FOREGROUND = 0.5
MIN_FOREGROUND = 0.004
MIN_PALETTE_FIT = 0.8
MAX_OBJECTS = 2
# A sketch's canvas is black without noise (a night scene's background is 5..45 with noise); its
# outlines cover at most about 20% (measured: 19% at 32 px, 12% at 64 px and more).
SKETCH_BLACK = 8
MAX_SKETCH_FOREGROUND = 0.3
# Smaller foreground specks are noise (a small object covers about 80 px at 64 x 64).
MIN_OBJECT_PX = 6
# A day background's channels are each at least this, a night one's at most that (the spec's ranges
# widened by the noise a 2-px border's median still carries).
DAY_MIN = 185 - 25
NIGHT_MAX = 45 + 25


def _as_canvas(pixels, dtype=np.float32) -> np.ndarray:
    if isinstance(pixels, np.ndarray) and pixels.shape == (SIZE, SIZE, 3) and pixels.dtype == np.uint8:
        return pixels.astype(dtype, copy=False)  # already a canvas: no round trip through PIL
    if isinstance(pixels, Image.Image) and pixels.mode == "RGB" and pixels.size == (SIZE, SIZE):
        return np.asarray(pixels, dtype=dtype)
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    image = image.convert("RGB")
    if image.size != (SIZE, SIZE):
        image = image.resize((SIZE, SIZE), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(image, dtype=dtype)


def _palette() -> tuple[np.ndarray, np.ndarray]:
    """Every object body (each colour at each brightness) and, per body, its colour's night rim."""
    colours = np.asarray(list(COLOURS.values()), np.float64)                     # [C, 3]
    rims = colours + NIGHT_RIM_WHITE_MIX * (255.0 - colours)                     # [C, 3]
    bodies = colours[:, None, :] * np.asarray(BRIGHTNESS)[None, :, None]         # [C, B, 3]
    return bodies.reshape(-1, 3), np.repeat(rims, len(BRIGHTNESS), axis=0)


_BODIES, _BODY_RIMS = _palette()
_RIMS = np.unique(_BODY_RIMS, axis=0)
# A scene's pixel lies on a segment between two colours: from its background to an object's body or
# to a night object's rim (the background varies between scenes), or from a rim to its body (fixed).
_FROM_BACKGROUND = np.concatenate([_BODIES, _RIMS])                               # [Ka, 3] ends


def _segments(background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The colours a scene with this background can take, as segments (start, end): the background
    blended with an object's body (its colour at a brightness) or with a night object's rim (its colour
    mixed 20 % towards white), and a rim blended with its body."""
    background = np.broadcast_to(np.asarray(background, np.float64), (len(_FROM_BACKGROUND), 3))
    return np.concatenate([background, _BODY_RIMS]), np.concatenate([_FROM_BACKGROUND, _BODIES])


def _border(canvas: np.ndarray) -> np.ndarray:
    """The pixels of the canvas's outer BORDER_PX rows and columns, [N, 3]."""
    return np.concatenate([canvas[:BORDER_PX].reshape(-1, 3), canvas[-BORDER_PX:].reshape(-1, 3),
                           canvas[:, :BORDER_PX].reshape(-1, 3), canvas[:, -BORDER_PX:].reshape(-1, 3)])


def _objects(foreground: np.ndarray, diagonal: bool = False) -> int:
    """Separate things in a foreground mask (specks under MIN_OBJECT_PX ignored); `diagonal`: pixels that
    touch at a corner are one thing (a sketch's thin diagonal outlines)."""
    labels, _ = ndimage.label(foreground, structure=np.ones((3, 3)) if diagonal else None)
    return int((np.bincount(labels.ravel())[1:] >= MIN_OBJECT_PX).sum())


def _fits_palette(points: np.ndarray, backgrounds: np.ndarray) -> np.ndarray:
    """Whether each point ([N, 3]) lies within PALETTE_TOLERANCE of one of its scene's colour segments;
    `backgrounds`: the scene's background colour, [3], or each point's own, [N, 3]."""
    # Fresh writable C arrays: a read-only view (np.broadcast_to, np.frombuffer) is another numba type,
    # which would compile the loop again inside the call.
    points = np.array(points, np.float64, order="C").reshape(-1, 3)
    backgrounds = np.broadcast_to(np.asarray(backgrounds, np.float64), points.shape).copy()
    return _kernels().fits_each(points, backgrounds, _BODIES, _BODY_RIMS, _FROM_BACKGROUND)


# The columns of world_check_kernels.scene_measures, one row per picture (NaN: a stage not reached,
# the picture having failed an earlier one). BACKGROUND is three columns, R G B.
PLAIN, BACKGROUND, FOREGROUND, OBJECTS, FIT = 0, 1, 4, 5, 6


def _kernels():
    """The compiled loops (world_check_kernels), imported on the first check."""
    from models.shapesworld import world_check_kernels

    return world_check_kernels


def outside_reason(pixels, domain: str | None = None) -> str:
    """Why `pixels` (uint8 HxWx3 array or PIL image) is not a ShapesWorld scene; "" when it may be one.
    With `domain` ("day" or "night") a scene of the other domain is named as such too."""
    return outside_reasons([pixels], domain)[0]


def outside_reasons(images, domain: str | None = None) -> list[str]:
    """outside_reason of each picture (a batch's pictures: one compiled pass over them all).

    Each stage runs only on the pictures that passed the stages before it: a photograph stops at its
    edges and costs no colour distances.
    """
    if not len(images):
        return []
    canvases = np.stack([_as_canvas(image, np.uint8) for image in images])
    measures = _kernels().scene_measures(canvases, _BODIES, _BODY_RIMS, _FROM_BACKGROUND)
    return [_reason(row, domain) for row in measures.tolist()]


def _reason(measures: list[float], domain: str | None) -> str:
    """The reason for one picture's scene_measures row (the same thresholds as the stages' early exits),
    as Python floats: a dozen numpy scalar operations per picture cost more than the compiled check."""
    if measures[PLAIN] < MIN_BORDER_BACKGROUND:
        return "its edges are not a plain background"
    background = measures[BACKGROUND:BACKGROUND + 3]
    day, night = all(v >= DAY_MIN for v in background), all(v <= NIGHT_MAX for v in background)
    if not (day or night):
        return "its background is neither ShapesWorld's light day nor its dark night"
    share = measures[FOREGROUND]
    if share > MAX_FOREGROUND:
        return f"{share:.0%} of it is not background (a scene's one or two objects cover at most about 40%)"
    if share < MIN_FOREGROUND:
        return "it shows no object"
    if measures[OBJECTS] > MAX_OBJECTS:
        return f"it holds {int(measures[OBJECTS])} separate things (a scene has one or two objects)"
    fit = measures[FIT]
    if fit < MIN_PALETTE_FIT:
        return f"only {fit:.0%} of its non-background pixels have ShapesWorld's colours"
    if domain == "day" and not day:
        return "it is a night scene, and this model turns day scenes into night ones"
    if domain == "night" and not night:
        return "it is a day scene, and this model turns night scenes into day ones"
    return ""


def sketch_outside_reason(pixels) -> str:
    """Why `pixels` is not a ShapesWorld sketch (sketch2photo's input: each object's 1-2 px outline in its
    colour on a flat black canvas, no noise); "" when it may be one. Measured like outside_reason
    (tests/shapesworld/test_world_check.py): sketches of every canvas size pass, photographs and
    day or night scenes are flagged."""
    canvas = _as_canvas(pixels)
    border = _border(canvas).max(1)
    if float(np.median(border)) > SKETCH_BLACK or (border <= 2 * SKETCH_BLACK).mean() < MIN_BORDER_BACKGROUND:
        return "its background is not a sketch's flat black canvas"
    foreground = canvas.max(-1) > BACKGROUND_TOLERANCE
    share = float(foreground.mean())
    if share > MAX_SKETCH_FOREGROUND:
        return f"{share:.0%} of it is drawn (a sketch's outlines cover at most about 20%)"
    if share < MIN_FOREGROUND:
        return "it shows no outline"
    objects = _objects(foreground, diagonal=True)
    if objects > MAX_OBJECTS:
        return f"it holds {objects} separate things (a sketch has one or two outlines)"
    fit = float(_fits_palette(canvas[foreground], np.zeros(3)).mean())
    if fit < MIN_PALETTE_FIT:
        return f"only {fit:.0%} of its lines have ShapesWorld's colours"
    return ""


# What each kind of built-in expects: a scene of either domain, a day or a night scene, or a sketch.
EXPECTED = {"scene": "a ShapesWorld scene", "day": "a ShapesWorld day scene", "night": "a ShapesWorld night scene",
            "sketch": "a ShapesWorld sketch"}


def warning_for(model: str, pixels, expects: str = "scene") -> list[str]:
    """The warning a built-in model `model` attaches to an answer about `pixels` ([] when none). `expects`:
    "scene" (either domain), "day", "night" (image-to-image inputs) or "sketch" (sketch2photo's input)."""
    return warnings_for(model, [pixels], expects)[0]


def warnings_for(model: str, images, expects: str = "scene") -> list[list[str]]:
    """warning_for of each of `images` (a batch's pictures: scenes are checked together, see
    outside_reasons)."""
    reasons = [sketch_outside_reason(image) for image in images] if expects == "sketch" else \
        outside_reasons(images, None if expects == "scene" else expects)
    return [[f"this picture does not look like {EXPECTED[expects]} ({reason}); the built-in model {model!r} only "
             "knows ShapesWorld's flat coloured shapes on a plain background, so its answer says nothing about "
             "this picture. Serve a model trained on such pictures (docs/models.md)."] if reason else []
            for reason in reasons]
