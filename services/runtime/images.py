"""Image decoding with the checks a public endpoint needs, and PNG encoding.

Cost per call is bounded before any pixel is decoded: the header's size must
pass three limits (total pixels, longest side, aspect ratio), each named by
its SYN_* setting in the refusal. Callers that only feed a model ask for
`fit_px`: JPEGs then decode at a reduced scale (`draft`) and any image is
box-reduced by an integer factor (`reduce`) to at most twice that size per
side, so the antialiased resize to the network's input never sees more than
about 4 * fit_px^2 pixels. The budget of one decode is therefore about
3 bytes x SYN_MAX_IMAGE_PIXELS for the decoded RGB pixels (48 MiB at the
default) plus one mode-conversion copy; tests/runtime/test_image_budget.py
holds the servers to it.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import invalid_argument, resource_exhausted

# What a model-facing caller asks for: every built-in network takes <= 128 px and the common
# transformers image processors 224-384 px, so 512 leaves the final resize a generous margin.
FIT_FOR_MODELS_PX = 512
# Modes Image.reduce() averages correctly; palette and 16-bit images are converted first.
_REDUCIBLE_MODES = {"L", "LA", "RGB", "RGBA", "I", "F"}


@dataclass(frozen=True)
class ImageLimits:
    """The three header checks; from Settings (max_image_pixels, max_image_side_px, max_image_aspect_ratio)."""

    max_pixels: int = 4096 * 4096
    max_side_px: int = 8192
    max_aspect_ratio: float = 32.0

    @classmethod
    def of(cls, limits) -> "ImageLimits":
        if isinstance(limits, ImageLimits):
            return limits
        if isinstance(limits, int):  # a bare pixel limit, as older callers pass it
            return cls(max_pixels=limits)
        return cls(limits.max_image_pixels, limits.max_image_side_px, limits.max_image_aspect_ratio)

    def check(self, width: int, height: int, field: str) -> None:
        if width <= 0 or height <= 0:
            raise invalid_argument(field, f"image has zero size {width}x{height}")
        if width * height > self.max_pixels:
            raise resource_exhausted(field, f"image is {width}x{height} = {width * height} pixels; the limit is "
                                            f"{self.max_pixels} (SYN_MAX_IMAGE_PIXELS)")
        if max(width, height) > self.max_side_px:
            raise resource_exhausted(field, f"image is {width}x{height}; the longest side may be at most "
                                            f"{self.max_side_px} px (SYN_MAX_IMAGE_SIDE_PX)")
        ratio = max(width, height) / min(width, height)
        if ratio > self.max_aspect_ratio:
            raise resource_exhausted(field, f"image is {width}x{height}, an aspect ratio of {ratio:.1f}; the limit "
                                            f"is {self.max_aspect_ratio:g} (SYN_MAX_IMAGE_ASPECT_RATIO)")


def decode_image(data: bytes, field: str, limits, fit_px: int | None = None) -> Image.Image:
    """Decode any Pillow-readable image to RGB.

    `limits` is the service's Settings (or an ImageLimits, or a bare pixel
    limit). The header is checked before decoding, so a small file that
    declares a huge or degenerate canvas is refused without allocating it.
    With `fit_px`, the result is cheaply shrunk to at most 2 * fit_px per side
    (never below fit_px), for callers that resize to a network's input anyway.
    """
    limits = ImageLimits.of(limits)
    if not data:
        raise invalid_argument(field, "image bytes are empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            limits.check(width, height, field)
            if fit_px:
                image.draft("RGB", (fit_px, fit_px))  # JPEG only: decode at 1/2, 1/4 or 1/8 scale
            image.load()
            image.info[SOURCE_SIZE] = (width, height)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise resource_exhausted(field, f"image declares more than {limits.max_pixels} pixels "
                                        "(SYN_MAX_IMAGE_PIXELS)") from None
    except UnidentifiedImageError:
        raise invalid_argument(field, "not a decodable image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, ZeroDivisionError,
            MemoryError, struct.error) as exc:
        # Pillow's plugins raise all of these on malformed files; the text may quote internals.
        raise invalid_argument(field, f"not a decodable image ({describe_decode_error(exc)})") from None
    sixteen_bit = image.mode.startswith("I;16")
    if fit_px:
        if sixteen_bit:
            image = image.convert("I")  # 16-bit modes cannot be reduced; 32-bit integers can
        if image.mode in _REDUCIBLE_MODES:
            image = shrink(image, fit_px)
    size = source_size(image)
    if image.mode != "RGB":  # a decoded RGB image is already what callers get: no copy
        image = to_rgb(image, sixteen_bit)
    image.info[SOURCE_SIZE] = size  # conversions start a fresh info dict
    return shrink(image, fit_px) if fit_px else image


def describe_decode_error(exc: BaseException) -> str:
    """A short, internals-free description of a decoder failure."""
    text = str(exc).split("<", 1)[0].strip().rstrip(":(").strip()
    if isinstance(exc, MemoryError) or not text:
        return "corrupt or unsupported data"
    return text[:120]


def shrink(image: Image.Image, fit_px: int) -> Image.Image:
    """Box-reduce by whole factors so each side stays within [fit_px, 2 * fit_px) when it was larger.

    The size before shrinking stays readable through `source_size` (heatmaps are reported at it).
    """
    size = source_size(image)
    factors = (max(1, image.width // fit_px), max(1, image.height // fit_px))
    if factors == (1, 1):
        return image
    reduced = image.reduce(factors)
    reduced.info[SOURCE_SIZE] = size
    return reduced


SOURCE_SIZE = "synesthesia_source_size_px"


def source_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the image as sent, before any shrinking by decode_image(fit_px=...)."""
    return image.info.get(SOURCE_SIZE, image.size)


RAW_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
# Encoded images up to this many bytes are cheap to decode (a 64x64 PNG takes ~0.1 ms), so services
# decode them inside the batch, in the model thread, saving each call a hop to a decoding thread and
# back; bigger ones are decoded in a thread before they join a batch, so they cannot hold it up.
INLINE_DECODE_BYTES = 64 * 1024


def decodes_inline(images) -> bool:
    """Whether `synesthesia.v1.Image` messages are small enough to decode inside a batch."""
    return sum(len(image.data) for image in images if image.WhichOneof("source") == "data") <= INLINE_DECODE_BYTES


def image_from_message(image, field: str, limits, fit_px: int | None = None) -> Image.Image:
    """An RGB image from a `synesthesia.v1.Image`: its encoded `data`, or its raw `pixels`.

    `field` names the Image message in errors (e.g. "image"); problems name `<field>.data` or
    `<field>.pixels.<part>`. Raw pixels skip decoding entirely: their size is checked against
    the same limits as a header's (`limits` and `fit_px` as for decode_image) and against the
    byte count before any array is built.
    """
    if image.WhichOneof("source") != "pixels":
        return decode_image(image.data, f"{field}.data", limits, fit_px)
    limits = ImageLimits.of(limits)
    raw = image.pixels
    channels = raw.channels or 3
    if channels not in RAW_MODES:
        raise invalid_argument(f"{field}.pixels.channels", f"{raw.channels} channels; use 1, 3 or 4 (0 means 3)")
    if raw.height_px <= 0 or raw.width_px <= 0:
        raise invalid_argument(f"{field}.pixels", f"size {raw.width_px}x{raw.height_px} must be positive")
    limits.check(raw.width_px, raw.height_px, f"{field}.pixels")
    expected = raw.height_px * raw.width_px * channels
    if len(raw.data) != expected:
        raise invalid_argument(f"{field}.pixels.data", f"{len(raw.data)} bytes; {raw.width_px}x{raw.height_px}x"
                                                       f"{channels} needs {expected}")
    shape = (raw.height_px, raw.width_px) if channels == 1 else (raw.height_px, raw.width_px, channels)
    pixels = Image.fromarray(np.frombuffer(raw.data, dtype=np.uint8).reshape(shape), RAW_MODES[channels])
    image = to_rgb(shrink(pixels, fit_px) if fit_px else pixels)
    image.info[SOURCE_SIZE] = (raw.width_px, raw.height_px)
    return image


def to_rgb(image: Image.Image, sixteen_bit: bool = False) -> Image.Image:
    """Any mode to 8-bit RGB; alpha is composited on white, 16-bit (or `sixteen_bit` "I") is rescaled."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float32)
        top = 65535.0 if sixteen_bit or image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if image.mode == "F":
        # float64: the span of two extreme float32 values overflows float32.
        arr = np.nan_to_num(np.asarray(image, dtype=np.float64), posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min()), float(arr.max())
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
