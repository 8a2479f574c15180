"""What every generator the Generation service serves implements.

Text-to-image::

    tokens, unknown = model.encode_prompt("a large red circle")   # hashable tokens, words it cannot read
    model.noise_dim
    model.generate([tokens, ...], [noise [n, noise_dim], ...])    # -> uint8 [n, H, W, 3] per prompt
    model.noise_truncation                                        # optional: (bound, scale) or None, see
                                                                  # models/generation/sampling.py

Image-to-image::

    model.translate_images([PIL RGB image, ...])                  # -> uint8 [H, W, 3] each, at its input's size
    model.work_size(width, height)                                # the (width, height) the network runs at
    model.input_warnings(image)                                   # notes on an input it cannot translate

A generator's output for a (prompt, noise) must not depend on its batch-mates, so equal
seeds give equal bytes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from models.families import check_input_warnings
from models.repository import ModelDetails


@runtime_checkable
class TextToImageGenerator(Protocol):
    details: ModelDetails
    noise_dim: int
    # The words it reads, for messages; empty for an open vocabulary.
    vocabulary: list[str]

    def encode_prompt(self, prompt: str) -> tuple[tuple, list[str]]: ...

    def generate(self, tokens: list[tuple], noise: list[torch.Tensor]) -> list[np.ndarray]: ...


@runtime_checkable
class ImageToImageTranslator(Protocol):
    details: ModelDetails

    def translate_images(self, images: list[Image.Image]) -> list[np.ndarray]: ...

    # What one image costs (SYN_GENERATION_MAX_TRANSLATE_PIXELS bounds it): the training size for a
    # network that resizes, the padded input size for one served at the input's size.
    def work_size(self, width: int, height: int) -> tuple[int, int]: ...

    # Plain-language notes on an input outside what the model was trained on (the built-ins: not a
    # ShapesWorld sketch, day or night scene as the model expects); [] when it has nothing to say.
    def input_warnings(self, image: Image.Image) -> list[str]: ...


def self_test(model, input_warnings: bool = True) -> None:
    """Text-to-image: two prompts with 1 and 2 noise rows; image-to-image: two images of other sizes.
    Outputs must be uint8 images of the promised count and size."""
    if hasattr(model, "translate_images"):
        images = [Image.new("RGB", (64, 48), (200, 30, 30)), Image.new("RGB", (40, 40))]
        check_input_warnings(model, images, input_warnings)
        found = model.translate_images(images)
        for image, out in zip(images, found):
            if out.dtype != np.uint8 or out.shape != (image.height, image.width, 3):
                raise RuntimeError(f"warm-up: a {image.size} image gave {out.dtype} {out.shape}")
        if len(found) != len(images):
            raise RuntimeError(f"warm-up: {len(images)} images gave {len(found)}")
        return
    tokens, _ = model.encode_prompt("a large red circle")
    if not tokens and model.vocabulary:  # a real vocabulary may lack ShapesWorld's words
        tokens, _ = model.encode_prompt(model.vocabulary[0])
    noise = [torch.zeros(1, model.noise_dim), torch.randn(2, model.noise_dim, generator=torch.Generator().manual_seed(0))]
    found = model.generate([tokens, tokens], noise)
    if [len(f) for f in found] != [1, 2] or any(f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3 for f in found):
        raise RuntimeError(f"warm-up: generate gave {[(f.dtype, f.shape) for f in found]}")
