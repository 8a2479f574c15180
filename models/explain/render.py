"""Pictures of explanations: heatmap overlays, image grids and labelled scatter maps (uint8 RGB arrays).

Services encode these as PNG; the docs' pictures come from the same functions.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

# A perceptually ordered colour map (matplotlib's "inferno" at 8 stops), interpolated; written out so that
# rendering needs no plotting library.
_STOPS = np.array([
    [0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99],
    [212, 72, 66], [245, 125, 21], [250, 193, 39], [252, 255, 164],
], dtype=np.float32)


def normalise(heatmap: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; a constant map becomes zeros."""
    heatmap = np.nan_to_num(np.asarray(heatmap, dtype=np.float32))
    low, high = float(heatmap.min()), float(heatmap.max())
    return (heatmap - low) / (high - low) if high > low else np.zeros_like(heatmap)


def colourise(heatmap: np.ndarray) -> np.ndarray:
    """[H,W] values (any range) -> uint8 [H,W,3] in the colour map, after min-max normalisation."""
    position = normalise(heatmap) * (len(_STOPS) - 1)
    low = np.floor(position).astype(int).clip(0, len(_STOPS) - 2)
    frac = (position - low)[..., None]
    return (_STOPS[low] * (1 - frac) + _STOPS[low + 1] * frac).round().astype(np.uint8)


def resize_map(heatmap: np.ndarray, width: int, height: int) -> np.ndarray:
    if heatmap.shape == (height, width):
        return heatmap.astype(np.float32)
    return np.asarray(Image.fromarray(heatmap.astype(np.float32), mode="F").resize((width, height),
                                                                                   Image.Resampling.BILINEAR))


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """uint8 [H,W,3] image with the colourised heatmap (resized to the image) blended on top."""
    height, width = image.shape[:2]
    colours = colourise(resize_map(heatmap, width, height)).astype(np.float32)
    return (image.astype(np.float32) * (1 - alpha) + colours * alpha).round().clip(0, 255).astype(np.uint8)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement (small pictures stay crisp)."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


def grid(images: list[np.ndarray], columns: int, pad: int = 2, background: int = 255) -> np.ndarray:
    """Tiles uint8 [h,w,3] images (same size) into one picture, row by row."""
    if not images:
        raise ValueError("no images to tile")
    h, w = images[0].shape[:2]
    rows = (len(images) + columns - 1) // columns
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), background, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = image
    return out


def to_uint8_image(values: np.ndarray) -> np.ndarray:
    """float [3,H,W] or [H,W,3] of any range -> uint8 [H,W,3], min-max normalised over all channels."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 3 and values.shape[0] == 3 and values.shape[-1] != 3:
        values = values.transpose(1, 2, 0)
    return (normalise(values) * 255).round().astype(np.uint8)


def scatter(points: np.ndarray, labels: list[str], size_px: int = 512,
            thumbnails: list[np.ndarray] | None = None, thumb_px: int = 24) -> np.ndarray:
    """A 2-D map: points [N,2] scaled into the canvas, each drawn as its thumbnail when given, else a dot
    coloured by its label, with a legend of the labels."""
    canvas = Image.new("RGB", (size_px, size_px), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if len(points):
        margin = thumb_px
        low, high = points.min(0), points.max(0)
        span = np.where(high > low, high - low, 1.0)
        xy = (points - low) / span * (size_px - 2 * margin) + margin
        names = sorted(set(labels))
        palette = {n: tuple(int(v) for v in colourise(np.array([[i + 1, 0, len(names) + 1]]))[0, 0])
                   for i, n in enumerate(names)}
        for i, (x, y) in enumerate(xy):
            if thumbnails is not None:
                thumb = Image.fromarray(thumbnails[i]).resize((thumb_px, thumb_px), Image.Resampling.BILINEAR)
                canvas.paste(thumb, (int(x) - thumb_px // 2, int(y) - thumb_px // 2))
            else:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=palette[labels[i]])
        if thumbnails is None:
            for row, name in enumerate(names[:20]):
                draw.rectangle([4, 4 + 12 * row, 12, 12 + 12 * row], fill=palette[name])
                draw.text((16, 2 + 12 * row), name[:40], fill=(0, 0, 0))
    return np.asarray(canvas)


def png_bytes(image: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
