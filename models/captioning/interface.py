"""What every captioner the Captioning service serves implements (built-in and every family).

    pixels = model.prepare(image)                      # PIL RGB image -> [3, H, W] for this model
    captions = model.caption(torch.stack(pixels_list), beam_sizes, max_lengths, on_settled=None)
    captions[i].words[j].attention                     # [h, w] summing to 1, or an empty array

`on_settled(row, words)` may be called while decoding with words that can no longer
change (built-in beam search); families that cannot tell send every word at the end.
A family without attention from text to image patches returns empty maps and says
why in `attention_note`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from models.captioning.decoding import DecodedCaption, DecodedWord
from models.families import check_input_warnings
from models.repository import ModelDetails


@runtime_checkable
class Captioner(Protocol):
    details: ModelDetails
    # Why words carry no attention map ("" when they do).
    attention_note: str

    def prepare(self, image: Image.Image) -> torch.Tensor: ...

    # Plain-language notes on an input the model cannot speak about (the built-ins: not ShapesWorld).
    # Optional: `input_warnings_each(images) -> list[list[str]]`, the same for a batch's images at once
    # where that is cheaper (the built-ins'); ServedModel.input_warnings_each falls back to this one.
    def input_warnings(self, image: Image.Image) -> list[str]: ...

    def caption(self, pixels: torch.Tensor, beam_sizes: list[int], max_lengths: list[int],
                on_settled: Callable[[int, list[DecodedWord]], None] | None = None) -> list[DecodedCaption]: ...


def self_test(model: Captioner, input_warnings: bool = True) -> None:
    """Two synthetic images through prepare and caption: one caption each, finite scores, maps that sum to 1."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)), Image.new("RGB", (40, 40))]
    check_input_warnings(model, images, input_warnings)
    pixels = torch.stack([model.prepare(image) for image in images])
    found = model.caption(pixels, [2, 1], [4, 4])
    if len(found) != len(images):
        raise RuntimeError(f"warm-up: {len(images)} images gave {len(found)} captions")
    for caption in found:
        if not isinstance(caption, DecodedCaption) or not math.isfinite(caption.log_prob):
            raise RuntimeError(f"warm-up: not a finite caption: {caption!r}")
        for word in caption.words:
            heat = np.asarray(word.attention)
            if heat.size and (heat.ndim != 2 or not np.isfinite(heat).all()
                              or abs(float(heat.sum()) - 1.0) > 1e-3):
                raise RuntimeError(f"warm-up: the attention map of {word.text!r} is not a 2-D distribution")
