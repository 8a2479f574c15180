"""Held-out localisation metrics of a SoundLocalizer on two-object ShapesWorld scenes.

    python -m models.audio.evaluate [--scenes 500] [--checkpoint-dir models/checkpoints]

On each evaluation scene (EVAL_SEEDS, two objects, the scene's own clip):

* IoU between the predicted region (pixels at or above half the heatmap's
  peak) and the sounding object's mask; `ciou` is the fraction of scenes with
  IoU >= 0.5 (Senocak et al.'s cIoU at threshold 0.5; with a binary ground
  truth cIoU is the IoU) and `auc` the area under that success rate as the
  IoU threshold sweeps 0..1;
* `peak_on_sounding`: the heatmap's maximum lies in the sounding object's box;
  `peak_on_other` in the other object's;
* `swap_peak_on_other`: the same image with the other object's sound (its
  signature plus noise at the scene's SNR) — the peak must follow the sound;
* peak-to-mean ratios of the heatmap for the scene's sound, for silence and
  for pure white noise (std 0.05): a flat map has a ratio near 1.

Baselines on the same scenes: `centre` (a Gaussian centred on the canvas,
sigma = a quarter of its side), `random` (uniform noise per pixel), and
`one_object_oracle`: the exact mask of one of the two objects chosen at random
— what vision alone can do at best without the sound.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from models.audio.data import identity_of, scene_clip
from models.audio.localize import localize
from models.shapesworld import EVAL_SEEDS, render_scene

IOU_THRESHOLDS = np.linspace(0.0, 1.0, 21)
NOISE_STD = 0.05


def eval_seeds(count: int) -> list[int]:
    return list(EVAL_SEEDS[:count])


def eval_seed_range(count: int) -> list[int]:
    seeds = eval_seeds(count)
    return [seeds[0], seeds[-1] + 1]


def predicted_region(heatmap: np.ndarray) -> np.ndarray:
    return heatmap >= 0.5 * heatmap.max()


def iou(heatmap: np.ndarray, mask: np.ndarray) -> float:
    region = predicted_region(heatmap)
    union = np.logical_or(region, mask).sum()
    return float(np.logical_and(region, mask).sum() / union) if union else 0.0


def peak_in_box(heatmap: np.ndarray, box) -> bool:
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    x0, y0, x1, y1 = box
    return bool(x0 <= x < x1 and y0 <= y < y1)


def success_summary(ious: list[float]) -> dict[str, float]:
    ious_arr = np.asarray(ious)
    success = np.array([(ious_arr >= t).mean() for t in IOU_THRESHOLDS])
    return {
        "ciou": float((ious_arr >= 0.5).mean()),
        "auc": float(np.trapezoid(success, IOU_THRESHOLDS)),
        "mean_iou": float(ious_arr.mean()),
    }


def peak_to_mean(heatmap: np.ndarray) -> float:
    return float(heatmap.max() / max(float(heatmap.mean()), 1e-12))


def centre_prior(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    sigma = size / 4
    return np.exp(-((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (2 * sigma**2))


def evaluation_scenes(count: int):
    return [render_scene(seed, objects=2) for seed in eval_seeds(count)]


def swapped_clip(scene) -> np.ndarray:
    """The other object's sound, at the scene's SNR, with noise from a seed-keyed stream."""
    other = scene.objects[1 - scene.sounding_index]
    return scene_clip(identity_of(other), scene.snr_db, np.random.default_rng([scene.seed, 7]))


def scene_metrics(scenes, heatmaps, swapped_heatmaps=None) -> dict[str, float]:
    """Metrics of heatmaps (one per scene, same order) however they were produced (in process or over gRPC)."""
    metrics = success_summary([iou(h, s.mask) for h, s in zip(heatmaps, scenes)])
    metrics["peak_on_sounding"] = float(np.mean(
        [peak_in_box(h, s.sounding_object.bbox) for h, s in zip(heatmaps, scenes)]))
    metrics["peak_on_other"] = float(np.mean(
        [peak_in_box(h, s.objects[1 - s.sounding_index].bbox) for h, s in zip(heatmaps, scenes)]))
    metrics["peak_to_mean_sound"] = float(np.mean([peak_to_mean(h) for h in heatmaps]))
    if swapped_heatmaps is not None:
        metrics["swap_peak_on_other"] = float(np.mean(
            [peak_in_box(h, s.objects[1 - s.sounding_index].bbox) for h, s in zip(swapped_heatmaps, scenes)]))
        metrics["swap_peak_on_sounding"] = float(np.mean(
            [peak_in_box(h, s.sounding_object.bbox) for h, s in zip(swapped_heatmaps, scenes)]))
    return metrics


def baselines(scenes, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    prior = centre_prior(scenes[0].size)
    named = {
        "centre": [prior for _ in scenes],
        "random": [rng.random((s.size, s.size)) for s in scenes],
        "one_object_oracle": [s.objects[int(rng.integers(2))].mask.astype(np.float32) for s in scenes],
    }
    for name, maps in named.items():
        m = scene_metrics(scenes, maps)
        for key in ("ciou", "auc", "mean_iou", "peak_on_sounding"):
            out[f"{name}_{key}"] = m[key]
    return out


def _batched(model, images, clips, device, batch_size=64):
    heatmaps = []
    for start in range(0, len(images), batch_size):
        results = localize(model, images[start:start + batch_size], clips[start:start + batch_size], device)
        heatmaps.extend(r.heatmap for r in results)
    return heatmaps


@torch.inference_mode()
def evaluate(model, scenes: int = 500, device="cpu") -> dict[str, float]:
    """Every metric of the module docstring, model first, then the baselines."""
    model.eval()
    evaluation = evaluation_scenes(scenes)
    images = [s.image for s in evaluation]
    heatmaps = _batched(model, images, [s.audio for s in evaluation], device)
    swapped = _batched(model, images, [swapped_clip(s) for s in evaluation], device)
    metrics = scene_metrics(evaluation, heatmaps, swapped)
    silence = np.zeros_like(evaluation[0].audio)
    noise_rng = np.random.default_rng(1)
    noise = [(NOISE_STD * noise_rng.standard_normal(len(silence))).astype(np.float32) for _ in evaluation]
    metrics["peak_to_mean_silence"] = float(np.mean(
        [peak_to_mean(h) for h in _batched(model, images, [silence] * len(images), device)]))
    metrics["peak_to_mean_noise"] = float(np.mean(
        [peak_to_mean(h) for h in _batched(model, images, noise, device)]))
    metrics["eval_scenes"] = len(evaluation)
    metrics.update(baselines(evaluation))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


def format_metrics(metrics: dict) -> str:
    return "\n".join(f"  {k:32s} {v}" for k, v in metrics.items())


def main(argv: list[str] | None = None) -> int:
    from models.audio.localize import load_localizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=500)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    model = load_localizer(checkpoint_dir=args.checkpoint_dir, device=args.device).model
    print(format_metrics(evaluate(model, args.scenes, args.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
