"""What every system in the peer comparison computes, as plain functions of PNG bytes.

Imported by each peer's server inside the peer's own environment (the repository on
PYTHONPATH) and by the in-process reference row, so Triton, TorchServe and Ray Serve run the
very code the Synesthesia services run for the same request:

- captioning: decode the PNG with PIL (RGB), `images_to_batch` to the model's size, one
  `beam_search` over the batch with beam 3 and at most 20 words (the service's defaults,
  length penalty 1), return (caption text, log probability) per image;
- embedding: decode, `images_to_batch`, `encode_images`, one float32 vector per image.

The Synesthesia side additionally returns per-word log-probabilities (attention is off in the
comparison) and validates its inputs; that is its own cost and stays in its numbers.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch
from PIL import Image

from models.captioning.checkpoint import load_captioner
from models.captioning.decoding import beam_search
from models.embedding.checkpoint import load_embedder
from models.images import images_to_batch

BEAM_SIZE = 3
MAX_WORDS = 20
MAX_BATCH_SIZE = 16
MAX_WAIT_MS = 5


def set_threads() -> int:
    """The benchmark's intra-op thread count (SYN_TORCH_THREADS, default 1) for this process."""
    threads = int(os.environ.get("SYN_TORCH_THREADS", "1") or 1)
    torch.set_num_threads(threads)
    return threads


def decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


class Captioning:
    def __init__(self) -> None:
        self.model = load_captioner().model.eval()
        self.size = self.model.config.image_size

    def __call__(self, pngs: list[bytes]) -> list[tuple[str, float]]:
        with torch.inference_mode():
            pixels = images_to_batch([decode(p) for p in pngs], self.size)
            found = beam_search(self.model, pixels, [BEAM_SIZE] * len(pngs), [MAX_WORDS] * len(pngs))
        return [(c.text, float(c.log_prob)) for c in found]


class Embedding:
    def __init__(self) -> None:
        self.model = load_embedder().model.eval()
        self.size = self.model.config.image_size
        self.dim = self.model.config.dim

    def __call__(self, pngs: list[bytes]) -> np.ndarray:
        with torch.inference_mode():
            pixels = images_to_batch([decode(p) for p in pngs], self.size)
            return self.model.encode_images(pixels).float().numpy()
