"""Pictures of what the models see: heatmaps over images, and labelled grids of them.

numpy + Pillow only (no torch), so the client and the `syn` CLI can draw what a
service returns:

    from synesthesia.pictures import attention_overlay, contact_sheet, png_bytes
    from synesthesia.tensors import from_tensor
    overlays = [attention_overlay(image, from_tensor(w.attention.values)) for w in response.words]
    sheet = contact_sheet(overlays, [w.text for w in response.words], columns=4)
    open("attention.png", "wb").write(png_bytes(sheet))

Any 2-D score map works: captioning attention (8x8), sound-source localisation
heatmaps (full resolution), a patch grid. `heatmap_overlay` is the same function.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Anchor colours of matplotlib's "inferno" at 0, 1/4, 1/2, 3/4, 1 (dark = low, bright yellow = high).
_INFERNO = np.array([(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)], dtype=np.float64)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image must be HxW, HxWx3 or HxWx4, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    return image[..., :3]


def colourise(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8 RGB (shape + (3,)) on the inferno colour map."""
    values = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    stops = np.linspace(0.0, 1.0, len(_INFERNO))
    channels = [np.interp(values, stops, _INFERNO[:, c]) for c in range(3)]
    return np.stack(channels, -1).round().astype(np.uint8)


def upsample(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    """A 2-D map resized bilinearly to height x width (float32)."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2 or heatmap.size == 0:
        raise ValueError(f"heatmap must be a non-empty 2-D array, got shape {heatmap.shape}")
    if heatmap.shape == (height, width):
        return heatmap.copy()
    return np.asarray(Image.fromarray(heatmap).resize((width, height), Image.BILINEAR), dtype=np.float32)


def attention_overlay(image_rgb_uint8: np.ndarray, heatmap_2d: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image with `heatmap_2d` (any grid size) upsampled bilinearly, scaled to its own
    min..max, colour-mapped and blended on top with weight `alpha`. Returns uint8 HxWx3."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = _as_rgb(image_rgb_uint8)
    height, width = image.shape[:2]
    heat = np.nan_to_num(upsample(heatmap_2d, height, width))
    low, high = float(heat.min()), float(heat.max())
    scaled = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colourise(scaled).astype(np.float32)
    return np.clip(blended.round(), 0, 255).astype(np.uint8)


heatmap_overlay = attention_overlay


def contact_sheet(images: Sequence[np.ndarray], labels: Sequence[str], columns: int = 4,
                  scale: int = 1, padding: int = 4) -> np.ndarray:
    """A grid of images (uint8, any sizes; each scaled by `scale`, nearest neighbour) with its label
    written under it, on white. Returns uint8 HxWx3."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if not images:
        raise ValueError("no images")
    if columns < 1 or scale < 1:
        raise ValueError("columns and scale must be >= 1")
    tiles = [Image.fromarray(_as_rgb(np.asarray(i))) for i in images]
    if scale > 1:
        tiles = [t.resize((t.width * scale, t.height * scale), Image.NEAREST) for t in tiles]
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_height = max(measure.textbbox((0, 0), str(label) or " ", font=font)[3] for label in labels) + 2
    cell_w = max(max(t.width for t in tiles),
                 max(measure.textbbox((0, 0), str(label), font=font)[2] for label in labels)) + padding
    cell_h = max(t.height for t in tiles) + text_height + padding
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * cell_w + padding, rows * cell_h + padding), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (tile, label) in enumerate(zip(tiles, labels)):
        x = padding + (k % columns) * cell_w
        y = padding + (k // columns) * cell_h
        sheet.paste(tile, (x, y))
        draw.text((x, y + tile.height + 1), str(label), fill=(0, 0, 0), font=font)
    return np.asarray(sheet, dtype=np.uint8).copy()


def png_bytes(pixels: np.ndarray) -> bytes:
    """uint8 HxWx3 (or HxW) pixels as a PNG file's bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
