"""What every sound localiser the Audio service serves implements.

    model.sample_rate                 # clips arrive resampled to it
    model.min_samples                 # shorter clips are refused
    model.localize(images, clips)     # uint8 [H, W, 3] images of any size, mono float32 clips
                                      # -> one models.audio.localize.Localization each

Optional, for ExplainLocalization (services/audio/explain.py; a model without them is refused
with FAILED_PRECONDITION): `explain_pixels(image)` -> the picture as the methods take it, float
[1, 3, H, W] in [0, 1] at the network's input size, and `explain_target(samples)` -> a
models.explain.targets.Target scoring such pixels for that clip (mono float32 at sample_rate).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from models.audio.localize import Localization
from models.families import check_input_warnings
from models.repository import ModelDetails


@runtime_checkable
class SoundLocalizer(Protocol):
    details: ModelDetails
    sample_rate: int
    min_samples: int

    # Plain-language notes on a picture the model cannot speak about (the built-ins: not ShapesWorld).
    def input_warnings(self, image: np.ndarray) -> list[str]: ...

    def localize(self, images: list[np.ndarray], clips: list[np.ndarray]) -> list[Localization]: ...


def self_test(model: SoundLocalizer, input_warnings: bool = True) -> None:
    """Two synthetic (image, clip) pairs: a finite heatmap at each image's size and a box inside it."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), np.zeros((40, 40, 3), np.uint8)]
    clip = (0.1 * rng.standard_normal(max(model.min_samples, model.sample_rate // 2))).astype(np.float32)
    check_input_warnings(model, images, input_warnings)
    found = model.localize(images, [clip, clip])
    if len(found) != 2:
        raise RuntimeError(f"warm-up: 2 pairs gave {len(found)} results")
    for image, result in zip(images, found):
        if result.heatmap.shape != image.shape[:2] or not np.isfinite(result.heatmap).all():
            raise RuntimeError(f"warm-up: heatmap of shape {result.heatmap.shape} for a {image.shape[:2]} image")
        x0, y0, x1, y1 = result.box
        if not (0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]):
            raise RuntimeError(f"warm-up: box {result.box} outside the image")
