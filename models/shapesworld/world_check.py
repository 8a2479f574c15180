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
# Colour distances are worked out this many points at a time: a chunk's [N, K] float64 temporaries
# stay in the CPU cache (a batch's few thousand object pixels at once ran 2.6x slower).
CHUNK_POINTS = 1024


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


def _distance_to_blends(points: np.ndarray, backgrounds: np.ndarray) -> np.ndarray:
    """Each point's smallest L2 distance to one of its scene's colour segments (_segments); `backgrounds`:
    the scene's background colour, [3], or each point's own, [N, 3] (points of many pictures at once).

    Expanded into dot products, |p - s - t d|^2 = |p - s|^2 - 2 t (p - s).d + t^2 |d|^2: for the
    fixed segments (p - s).d = p.d - s.d; for those that start at the background b, with q = p - b and
    an end e, (p - s).d = q.e - q.b and |d|^2 = |e|^2 - 2 b.e + |b|^2. So the work is a few [N, 3] x
    [3, K] products and [N, K] passes instead of [N, K, 3] temporaries (it runs for every picture a
    built-in model is given). In float64, so the expansion loses nothing against the direct float32
    difference.
    """
    points = points.astype(np.float64)
    backgrounds = np.broadcast_to(np.asarray(backgrounds, np.float64), points.shape)
    ends = _FROM_BACKGROUND
    q = points - backgrounds
    along_a = q @ ends.T - (q * backgrounds).sum(-1)[:, None]                         # [N, Ka]
    length2_a = (ends ** 2).sum(-1) - 2.0 * backgrounds @ ends.T + (backgrounds ** 2).sum(-1)[:, None]
    to_start2_a = (q ** 2).sum(-1)[:, None]
    starts, direction = _BODY_RIMS, _BODIES - _BODY_RIMS
    along_b = points @ direction.T - (starts * direction).sum(-1)                     # [N, Kb]
    length2_b = (direction ** 2).sum(-1)
    to_start2_b = (points ** 2).sum(-1)[:, None] - 2.0 * points @ starts.T + (starts ** 2).sum(-1)
    along = np.concatenate([along_a, along_b], 1)
    length2 = np.concatenate([length2_a, np.broadcast_to(length2_b, along_b.shape)], 1)
    t = np.clip(along / np.maximum(length2, 1e-6), 0.0, 1.0)
    squared = np.concatenate([to_start2_a.repeat(len(ends), 1), to_start2_b], 1) - 2.0 * t * along + t * t * length2
    return np.sqrt(np.maximum(squared.min(1), 0.0))


def _fits_palette(points: np.ndarray, backgrounds: np.ndarray) -> np.ndarray:
    """Whether each point lies within PALETTE_TOLERANCE of one of its scene's colour segments
    (`backgrounds` as in _distance_to_blends), in chunks of CHUNK_POINTS."""
    points = points.astype(np.float64)
    backgrounds = np.broadcast_to(np.asarray(backgrounds, np.float64), points.shape)
    fits = np.zeros(len(points), bool)
    for start in range(0, len(points), CHUNK_POINTS):
        chunk = slice(start, start + CHUNK_POINTS)
        fits[chunk] = _fits_palette_chunk(points[chunk], backgrounds[chunk])
    return fits


def _fits_palette_chunk(points: np.ndarray, backgrounds: np.ndarray) -> np.ndarray:
    # Most object pixels sit near a body colour (a segment's end), which one [N, 24] pass settles;
    # only the rest (anti-aliased edges, rims, foreign colours) need the full segment distances.
    near_body = ((points ** 2).sum(-1)[:, None] - 2.0 * points @ _BODIES.T
                 + (_BODIES ** 2).sum(-1)).min(1) <= PALETTE_TOLERANCE ** 2
    fits = near_body.copy()
    rest = ~near_body
    if rest.any():
        fits[rest] = _distance_to_blends(points[rest], backgrounds[rest]) <= PALETTE_TOLERANCE
    return fits


def _border(canvas: np.ndarray) -> np.ndarray:
    """The pixels of the canvas's outer BORDER_PX rows and columns, [N, 3] (or [B, N, 3] for [B, H, W, 3])."""
    lead = canvas.shape[:-3]
    return np.concatenate([canvas[..., :BORDER_PX, :, :].reshape(*lead, -1, 3),
                           canvas[..., -BORDER_PX:, :, :].reshape(*lead, -1, 3),
                           canvas[..., :, :BORDER_PX, :].reshape(*lead, -1, 3),
                           canvas[..., :, -BORDER_PX:, :].reshape(*lead, -1, 3)], axis=-2)


def _objects(foreground: np.ndarray, diagonal: bool = False) -> int:
    """Separate things in a foreground mask (specks under MIN_OBJECT_PX ignored); `diagonal`: pixels that
    touch at a corner are one thing (a sketch's thin diagonal outlines)."""
    labels, _ = ndimage.label(foreground, structure=np.ones((3, 3)) if diagonal else None)
    return int((np.bincount(labels.ravel())[1:] >= MIN_OBJECT_PX).sum())


# Labelling a stack of masks at once: neighbours within an image only, never across images.
_PLANE_NEIGHBOURS = np.zeros((3, 3, 3), bool)
_PLANE_NEIGHBOURS[1] = ndimage.generate_binary_structure(2, 1)


def _objects_each(foregrounds: np.ndarray) -> np.ndarray:
    """_objects of each mask of a [B, H, W] stack, in one labelling pass."""
    labels, count = ndimage.label(foregrounds, structure=_PLANE_NEIGHBOURS)
    owner = np.zeros(count + 1, np.int64)  # the image each label lies in
    owner[labels.ravel()] = np.repeat(np.arange(len(foregrounds)), labels[0].size)
    things = np.bincount(labels.ravel(), minlength=count + 1)[1:] >= MIN_OBJECT_PX
    return np.bincount(owner[1:][things], minlength=len(foregrounds))


def outside_reason(pixels, domain: str | None = None) -> str:
    """Why `pixels` (uint8 HxWx3 array or PIL image) is not a ShapesWorld scene; "" when it may be one.
    With `domain` ("day" or "night") a scene of the other domain is named as such too."""
    return outside_reasons([pixels], domain)[0]


def outside_reasons(images, domain: str | None = None) -> list[str]:
    """outside_reason of each picture, decided together.

    The model thread runs this for every picture of a batch, so it works on the whole stack in one
    set of array operations (about 25 small numpy calls per picture otherwise). Each stage runs only
    on the pictures that passed the stages before it, as a picture-by-picture check would: a
    photograph stops at its edges and costs no colour distances.
    """
    # uint8 until the colour distances: a batch's float32 copies did not stay in the CPU cache.
    if not len(images):
        return []
    canvases = np.stack([_as_canvas(image, np.uint8) for image in images])
    reasons = [""] * len(canvases)
    border = _border(canvases).astype(np.float32)                                    # [B, N, 3]
    background = np.median(border, axis=1)                                           # [B, 3]
    plain = (np.abs(border - background[:, None]).max(2) <= BACKGROUND_TOLERANCE).mean(1)
    day = (background >= 185 - 25).all(1)
    night = (background <= 45 + 25).all(1)
    alive = []
    for i in range(len(canvases)):
        if plain[i] < MIN_BORDER_BACKGROUND:
            reasons[i] = "its edges are not a plain background"
        elif not (day[i] or night[i]):
            reasons[i] = "its background is neither ShapesWorld's light day nor its dark night"
        else:
            alive.append(i)
    if not alive:
        return reasons
    # |pixel - background| > tolerance for whole-number pixels, as integer bounds; per channel plane,
    # then or-ed (an any() over the last, 3-long axis costs 2.5x as much).
    above = np.floor(background[alive] + BACKGROUND_TOLERANCE).astype(np.int16)[:, None, None]
    below = np.ceil(background[alive] - BACKGROUND_TOLERANCE).astype(np.int16)[:, None, None]
    pixels = canvases[alive]
    off = (pixels > above) | (pixels < below)
    foreground = off[..., 0] | off[..., 1] | off[..., 2]
    shares = foreground.reshape(len(alive), -1).mean(1)
    keep = []
    for row, (i, share) in enumerate(zip(alive, shares.tolist())):
        if share > MAX_FOREGROUND:
            reasons[i] = f"{share:.0%} of it is not background (a scene's one or two objects cover at most about 40%)"
        elif share < MIN_FOREGROUND:
            reasons[i] = "it shows no object"
        else:
            keep.append(row)
    if not keep:
        return reasons
    alive, foreground = [alive[row] for row in keep], foreground[keep]
    objects = _objects_each(foreground)
    keep = []
    for row, (i, count) in enumerate(zip(alive, objects.tolist())):
        if count > MAX_OBJECTS:
            reasons[i] = f"it holds {count} separate things (a scene has one or two objects)"
        else:
            keep.append(row)
    if not keep:
        return reasons
    alive, foreground = [alive[row] for row in keep], foreground[keep]
    # Every remaining picture's object pixels in one pass, each with its own picture's background.
    owner, ys, xs = np.nonzero(foreground)
    picture = np.asarray(alive)[owner]
    fits = _fits_palette(canvases[picture, ys, xs], background[picture])
    fit_share = np.bincount(owner, weights=fits, minlength=len(alive)) / np.bincount(owner, minlength=len(alive))
    for i, fit in zip(alive, fit_share.tolist()):
        if fit < MIN_PALETTE_FIT:
            reasons[i] = f"only {fit:.0%} of its non-background pixels have ShapesWorld's colours"
        elif domain == "day" and not day[i]:
            reasons[i] = "it is a night scene, and this model turns day scenes into night ones"
        elif domain == "night" and not night[i]:
            reasons[i] = "it is a day scene, and this model turns night scenes into day ones"
    return reasons


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
