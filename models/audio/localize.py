"""Inference with a SoundLocalizer: batches of (image, clip) -> heatmap, box, scores.

The service and `evaluate.py` both call `localize`, so the metrics the
checkpoint reports are the ones the service delivers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from models.audio.network import LocalizationConfig, SoundLocalizer
from models.training import LoadedModel, load_shipped


@dataclass
class Localization:
    # [H, W] in [0, 1] at the input image's resolution.
    heatmap: np.ndarray
    # (x_min, y_min, x_max, y_max), max exclusive, in input pixels.
    box: tuple[int, int, int, int]
    # Largest cosine similarity between the sound and a location, -1..1.
    peak_score: float
    # heatmap peak / heatmap mean: near 1 when nothing in the picture sounds like the clip.
    peak_to_mean: float
    # (x, y) of the heatmap's maximum.
    peak_xy: tuple[int, int]


def network_input(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [size, size, 3]; ShapesWorld scenes are drawn to scale, so a resize is exact enough."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None))


def peak_region(heatmap: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The connected region above half the peak that contains the peak, and the peak's (x, y)."""
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    above = heatmap >= 0.5 * heatmap[y, x]
    labels, _ = ndimage.label(above)
    return labels == labels[y, x], (int(x), int(y))


def box_of(region: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(region)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@torch.inference_mode()
def localize(model: SoundLocalizer, images: list[np.ndarray], clips: list[np.ndarray],
             device: torch.device | str = "cpu") -> list[Localization]:
    """`images`: uint8 [H, W, 3] of any sizes; `clips`: mono float32 at the model's sample rate.

    Images go through the visual network in one batch; clips are batched by
    length (the audio encoder pools over time, so padding would change them).
    """
    if len(images) != len(clips):
        raise ValueError("one clip per image")
    size = model.config.image_size
    batch = np.stack([network_input(img, size) for img in images])
    visual = model.embed_images(model.prepare_images(torch.from_numpy(batch).to(device)))
    audio = torch.empty(len(clips), visual.shape[1], device=device)
    by_length: dict[int, list[int]] = {}
    for i, clip in enumerate(clips):
        by_length.setdefault(len(clip), []).append(i)
    for indices in by_length.values():
        samples = torch.from_numpy(np.stack([clips[i] for i in indices])).to(device)
        audio[indices] = model.embed_audio(samples)
    cosine = torch.einsum("bdhw,bd->bhw", visual, audio)
    results = []
    for i, image in enumerate(images):
        height, width = image.shape[:2]
        cos_up = torch.nn.functional.interpolate(
            cosine[i][None, None], size=(height, width), mode="bilinear", align_corners=False
        )[0, 0]
        heat = torch.sigmoid(model.logit_scale * cos_up + model.logit_bias).float().cpu().numpy()
        results.append(summarise(heat, float(cos_up.max())))
    return results


def summarise(heat: np.ndarray, peak_score: float) -> Localization:
    """A localiser's [H, W] map in [0, 1] -> its Localization: the box around the connected region
    above half the peak that holds the peak, and the peak / mean ratio (every family the same way)."""
    region, peak_xy = peak_region(heat)
    return Localization(
        heatmap=heat,
        box=box_of(region),
        peak_score=peak_score,
        peak_to_mean=float(heat.max() / max(float(heat.mean()), 1e-12)),
        peak_xy=peak_xy,
    )


def load_localizer(name: str = "localization", checkpoint_dir=None, device: torch.device | str = "cpu") -> LoadedModel:
    """A shipped checkpoint (safetensors + manifest entry), in eval mode on `device`. The manifest's
    config also holds the training options; the network takes its own fields."""
    def build(config: dict) -> SoundLocalizer:
        return SoundLocalizer(LocalizationConfig(**{k: v for k, v in config.items()
                                                    if k in LocalizationConfig.__dataclass_fields__}))

    return load_shipped(name, build, directory=checkpoint_dir, device=device)
