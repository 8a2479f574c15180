"""What every embedder the Embedding service serves implements.

Image-text (built-in, CLIP, SigLIP, SigLIP 2, ALIGN)::

    item = model.prepare(image)                    # PIL RGB -> this model's input for one image
    model.embed_images([item, ...])                # -> [N, dimension], L2-normalised
    model.embed_texts(["a red circle"])            # -> [N, dimension], L2-normalised
    model.unknown_words("a dog")                   # words the model cannot read ([] for sub-word tokenizers)

Audio-text (CLAP)::

    model.sample_rate                              # clips arrive resampled to it
    model.embed_audio([samples, ...])              # mono float32 arrays -> [N, dimension]
    model.embed_texts([...])

`details.fingerprint` identifies the weights: a collection refuses vectors from other
weights under the same model name. A text's vector never depends on its batch-mates.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from models.families import check_input_warnings
from models.repository import ModelDetails


@runtime_checkable
class ImageTextEmbedder(Protocol):
    details: ModelDetails
    dimension: int

    def prepare(self, image: Image.Image) -> Any: ...

    # Plain-language notes on an input the model cannot speak about (the built-ins: not ShapesWorld).
    # Optional: `input_warnings_each(images) -> list[list[str]]`, the same for a batch's images at once
    # where that is cheaper (the built-ins'); ServedModel.input_warnings_each falls back to this one.
    def input_warnings(self, image: Image.Image) -> list[str]: ...

    def embed_images(self, items: list) -> torch.Tensor: ...

    def embed_texts(self, texts: list[str]) -> torch.Tensor: ...

    def unknown_words(self, text: str) -> list[str]: ...


@runtime_checkable
class AudioTextEmbedder(Protocol):
    details: ModelDetails
    dimension: int
    sample_rate: int

    def embed_audio(self, clips: list[np.ndarray]) -> torch.Tensor: ...

    def embed_texts(self, texts: list[str]) -> torch.Tensor: ...

    def unknown_words(self, text: str) -> list[str]: ...


def _check(vectors: torch.Tensor, rows: int, dimension: int, what: str) -> None:
    if tuple(vectors.shape) != (rows, dimension):
        raise RuntimeError(f"warm-up: {rows} {what} gave shape {tuple(vectors.shape)}, expected ({rows}, {dimension})")
    if not torch.isfinite(vectors).all():
        raise RuntimeError(f"warm-up: non-finite {what} embeddings")


def self_test(model, input_warnings: bool = True) -> None:
    """Synthetic texts and images (or clips) in: finite [N, dimension] out."""
    if model.dimension < 1:
        raise RuntimeError(f"warm-up: dimension {model.dimension}")
    _check(model.embed_texts(["a large red circle", "a dog"]), 2, model.dimension, "texts")
    rng = np.random.default_rng(0)
    if hasattr(model, "embed_audio"):
        clips = [(0.1 * rng.standard_normal(model.sample_rate)).astype(np.float32), np.zeros(4000, np.float32)]
        _check(model.embed_audio(clips), 2, model.dimension, "clips")
    else:
        images = [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)), Image.new("RGB", (40, 40))]
        check_input_warnings(model, images, input_warnings)
        _check(model.embed_images([model.prepare(i) for i in images]), 2, model.dimension, "images")
