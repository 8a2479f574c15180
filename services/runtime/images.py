"""Image decoding with the checks a public endpoint needs, and PNG encoding."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import invalid_argument, resource_exhausted


def decode_image(data: bytes, field: str, max_pixels: int) -> Image.Image:
    """Decode any Pillow-readable image to RGB.

    The pixel count is checked from the header before decoding, so a small
    file that declares a huge canvas is refused without allocating it.
    """
    if not data:
        raise invalid_argument(field, "image bytes are empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise resource_exhausted(
                    field, f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
                )
            if width == 0 or height == 0:
                raise invalid_argument(field, f"image has zero size {width}x{height}")
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise resource_exhausted(field, f"image declares too many pixels ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise invalid_argument(field, f"not a decodable image ({type(exc).__name__}: {exc})") from None
    return to_rgb(image)


RAW_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
# Encoded images up to this many bytes are cheap to decode (a 64x64 PNG takes ~0.1 ms), so services
# decode them inside the batch, in the model thread, saving each call a hop to a decoding thread and
# back; bigger ones are decoded in a thread before they join a batch, so they cannot hold it up.
INLINE_DECODE_BYTES = 64 * 1024


def decodes_inline(images) -> bool:
    """Whether `synesthesia.v1.Image` messages are small enough to decode inside a batch."""
    return sum(len(image.data) for image in images if image.WhichOneof("source") == "data") <= INLINE_DECODE_BYTES


def image_from_message(image, field: str, max_pixels: int) -> Image.Image:
    """An RGB image from a `synesthesia.v1.Image`: its encoded `data`, or its raw `pixels`.

    `field` names the Image message in errors (e.g. "image"); problems name `<field>.data` or
    `<field>.pixels.<part>`. Raw pixels skip decoding entirely: their size is checked against
    `max_pixels` and against the byte count before any array is built.
    """
    if image.WhichOneof("source") != "pixels":
        return decode_image(image.data, f"{field}.data", max_pixels)
    raw = image.pixels
    channels = raw.channels or 3
    if channels not in RAW_MODES:
        raise invalid_argument(f"{field}.pixels.channels", f"{raw.channels} channels; use 1, 3 or 4 (0 means 3)")
    if raw.height_px <= 0 or raw.width_px <= 0:
        raise invalid_argument(f"{field}.pixels", f"size {raw.width_px}x{raw.height_px} must be positive")
    if raw.height_px * raw.width_px > max_pixels:
        raise resource_exhausted(f"{field}.pixels", f"image is {raw.width_px}x{raw.height_px} = "
                                 f"{raw.height_px * raw.width_px} pixels; the limit is {max_pixels} "
                                 "(SYN_MAX_IMAGE_PIXELS)")
    expected = raw.height_px * raw.width_px * channels
    if len(raw.data) != expected:
        raise invalid_argument(f"{field}.pixels.data", f"{len(raw.data)} bytes; {raw.width_px}x{raw.height_px}x"
                                                       f"{channels} needs {expected}")
    shape = (raw.height_px, raw.width_px) if channels == 1 else (raw.height_px, raw.width_px, channels)
    pixels = np.frombuffer(raw.data, dtype=np.uint8).reshape(shape)
    return to_rgb(Image.fromarray(pixels, RAW_MODES[channels]))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode to 8-bit RGB; alpha is composited on white, 16-bit is rescaled."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if image.mode == "F":
        arr = np.nan_to_num(np.asarray(image, dtype=np.float64))
        lo, hi = arr.min(), arr.max()
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode uint8 HxWx3 (or HxW) pixels as PNG; deterministic for equal input."""
    buffer = io.BytesIO()
    # zlib level 1: half the encode time of Pillow's default (6) for ~10% more bytes on
    # ShapesWorld-like images, a good trade on loopback and LAN links.
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
