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
It works on the picture resized to 64 x 64 (scenes are drawn to scale) and takes about a
millisecond. Its measured rates (tests/shapesworld/test_world_check.py): held-out scenes
of both domains and another renderer pass, real photographs are flagged.
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


def _as_canvas(pixels) -> np.ndarray:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    image = image.convert("RGB")
    if image.size != (SIZE, SIZE):
        image = image.resize((SIZE, SIZE), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(image, dtype=np.float32)


def _palette() -> tuple[np.ndarray, np.ndarray]:
    """Every object body (each colour at each brightness) and, per body, its colour's night rim."""
    colours = np.asarray(list(COLOURS.values()), np.float64)                     # [C, 3]
    rims = colours + NIGHT_RIM_WHITE_MIX * (255.0 - colours)                     # [C, 3]
    bodies = colours[:, None, :] * np.asarray(BRIGHTNESS)[None, :, None]         # [C, B, 3]
    return bodies.reshape(-1, 3), np.repeat(rims, len(BRIGHTNESS), axis=0)


_BODIES, _BODY_RIMS = _palette()
_RIMS = np.unique(_BODY_RIMS, axis=0)


def _segments(background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The colours a scene's pixel can take, as segments (start, end): the background blended with an
    object's body (its colour at a brightness) or with a night object's rim (its colour mixed 20 %
    towards white), and a rim blended with its body. Only the background varies between scenes."""
    background = np.broadcast_to(np.asarray(background, np.float64), (len(_BODIES) + len(_RIMS), 3))
    starts = np.concatenate([background, _BODY_RIMS])
    ends = np.concatenate([_BODIES, _RIMS, _BODIES])
    return starts, ends


def _distance_to_blends(points: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Each point's smallest L2 distance to one of the scene's colour segments.

    Expanded into dot products, |p - s - t d|^2 = |p - s|^2 - 2 t (p - s).d + t^2 |d|^2 with
    (p - s).d = p.d - s.d, so the work is two [N, 3] x [3, K] products and a few [N, K] passes instead
    of [N, K, 3] temporaries (it runs for every image a built-in model is given; 3x cheaper). In
    float64, so the expansion loses nothing against the direct float32 difference.
    """
    starts, ends = _segments(background)
    points = points.astype(np.float64)
    direction = ends - starts                                       # [K, 3]
    length2 = (direction ** 2).sum(-1)                              # [K]
    along = points @ direction.T - (starts * direction).sum(-1)     # [N, K]: (p - s).d
    t = np.clip(along / np.maximum(length2, 1e-6), 0.0, 1.0)
    to_start2 = (points ** 2).sum(-1)[:, None] - 2.0 * points @ starts.T + (starts ** 2).sum(-1)
    squared = to_start2 - 2.0 * t * along + t * t * length2
    return np.sqrt(np.maximum(squared.min(1), 0.0))


def _fits_palette(points: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Whether each point lies within PALETTE_TOLERANCE of one of the scene's colour segments.

    Most object pixels sit near a body colour (a segment's end), which one [N, 24] pass settles;
    only the rest (anti-aliased edges, rims, foreign colours) need the full segment distances.
    """
    points = points.astype(np.float64)
    near_body = ((points ** 2).sum(-1)[:, None] - 2.0 * points @ _BODIES.T
                 + (_BODIES ** 2).sum(-1)).min(1) <= PALETTE_TOLERANCE ** 2
    fits = near_body.copy()
    rest = ~near_body
    if rest.any():
        fits[rest] = _distance_to_blends(points[rest], background) <= PALETTE_TOLERANCE
    return fits


def _border(canvas: np.ndarray) -> np.ndarray:
    """The pixels of the canvas's outer BORDER_PX rows and columns, [N, 3]."""
    return np.concatenate([canvas[:BORDER_PX].reshape(-1, 3), canvas[-BORDER_PX:].reshape(-1, 3),
                           canvas[:, :BORDER_PX].reshape(-1, 3), canvas[:, -BORDER_PX:].reshape(-1, 3)])


def _objects(foreground: np.ndarray, diagonal: bool = False) -> int:
    """Separate things in a foreground mask (specks under MIN_OBJECT_PX ignored); `diagonal`: pixels that
    touch at a corner are one thing (a sketch's thin diagonal outlines)."""
    labels, _ = ndimage.label(foreground, structure=np.ones((3, 3)) if diagonal else None)
    return int((np.bincount(labels.ravel())[1:] >= MIN_OBJECT_PX).sum())


def outside_reason(pixels, domain: str | None = None) -> str:
    """Why `pixels` (uint8 HxWx3 array or PIL image) is not a ShapesWorld scene; "" when it may be one.
    With `domain` ("day" or "night") a scene of the other domain is named as such too."""
    canvas = _as_canvas(pixels)
    border = _border(canvas)
    background = np.median(border, axis=0)
    plain = np.abs(border - background).max(1) <= BACKGROUND_TOLERANCE
    if plain.mean() < MIN_BORDER_BACKGROUND:
        return "its edges are not a plain background"
    day = (background >= 185 - 25).all()
    night = (background <= 45 + 25).all()
    if not (day or night):
        return "its background is neither ShapesWorld's light day nor its dark night"
    foreground = (np.abs(canvas.reshape(-1, 3) - background) > BACKGROUND_TOLERANCE).any(1).reshape(canvas.shape[:2])
    share = float(foreground.mean())
    if share > MAX_FOREGROUND:
        return f"{share:.0%} of it is not background (a scene's one or two objects cover at most about 40%)"
    if share < MIN_FOREGROUND:
        return "it shows no object"
    objects = _objects(foreground)
    if objects > MAX_OBJECTS:
        return f"it holds {objects} separate things (a scene has one or two objects)"
    fit = float(_fits_palette(canvas[foreground], background).mean())
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
    reason = sketch_outside_reason(pixels) if expects == "sketch" else \
        outside_reason(pixels, None if expects == "scene" else expects)
    if not reason:
        return []
    return [f"this picture does not look like {EXPECTED[expects]} ({reason}); the built-in model {model!r} only "
            "knows ShapesWorld's flat coloured shapes on a plain background, so its answer says nothing about "
            "this picture. Serve a model trained on such pictures (docs/models.md)."]
