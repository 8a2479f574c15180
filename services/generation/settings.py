"""SYN_GENERATION_*: the generation service's own settings, typed and checked once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.runtime import read_settings

DEFAULT_CHUNK = 8
# 1024 x 1024: a reference resnet_9blocks (ngf 64) needs 0.9 GB more there and, on two busy CPU cores,
# 104 s (1920 x 1088: 2.5 GB peak, 349 s; docs/image_to_image.md). Raise it on a GPU.
DEFAULT_MAX_TRANSLATE_PIXELS = 1024 * 1024


@dataclass(frozen=True)
class GenerationSettings:
    # Images generated per forward pass: a fixed chunk keeps results independent of batch make-up.
    chunk: int = field(default=DEFAULT_CHUNK, metadata={"min": 1})
    # Largest image (width x height, after padding) an image-to-image network runs at, and the most
    # pixels one forward pass holds: networks served at the input's size cost memory per pixel.
    max_translate_pixels: int = field(default=DEFAULT_MAX_TRANSLATE_PIXELS, metadata={"min": 64 * 64})

    @classmethod
    def from_env(cls) -> "GenerationSettings":
        return read_settings(cls, "SYN_GENERATION_")
