"""How good is a saliency map: the pointing game, deletion and insertion curves, baseline maps, and the
model-randomisation sanity check.

* Pointing game (Zhang et al., 2016): a hit when the map's maximum lies inside the ground-truth mask of the
  object the score is about (no tolerance: ShapesWorld objects are small, 10-28 px on 64 px).
* Deletion / insertion (Petsiuk et al., 2018): pixels are removed from the image (painted with the
  background colour) in order of decreasing saliency, or inserted into a background-only canvas in that
  order, and the model's probability for the target is recorded after each of `steps` equal fractions; the
  area under that curve (x from 0 to 1) is reported. Deletion: lower is better; insertion: higher is better.
* Baselines: a uniformly random map and a centred Gaussian (what a map that knows nothing scores).
* Sanity check (Adebayo et al., 2018, cascading randomisation): the model's Conv2d and Linear layers are
  re-initialised one after another from the top (output) down, and after each step the map is compared
  with the trained model's by Spearman rank correlation. A method that explains the model must change
  (correlation near 0); one that stays correlated mostly shows the input (edges).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from models.explain.attribution import border_baseline


def pointing_hit(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return bool(mask[y, x])


def random_map(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random((height, width)).astype(np.float32)


def centre_map(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    sigma = 0.25 * min(height, width)
    return np.exp(-(((ys - (height - 1) / 2) ** 2 + (xs - (width - 1) / 2) ** 2) / (2 * sigma**2)))


@torch.no_grad()
def deletion_insertion(probability: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
                       heatmap: np.ndarray, steps: int = 16,
                       tie_rng: np.random.Generator | None = None) -> tuple[float, float]:
    """(deletion AUC, insertion AUC) for one image [3,H,W] in [0,1] and its map [H,W]. Equal saliency values
    are ordered randomly (`tie_rng`), so a flat map scores like a random one rather than like raster order."""
    _, height, width = image.shape
    rng = tie_rng or np.random.default_rng(0)
    jitter = rng.random(heatmap.size) * 1e-6 * (float(np.ptp(heatmap)) or 1.0)
    order = torch.from_numpy(np.argsort(-(heatmap.reshape(-1) + jitter), kind="stable").copy())
    background = border_baseline(image[None])[0].expand_as(image)
    counts = [round(i * height * width / steps) for i in range(steps + 1)]
    deleted, inserted = [], []
    for count in counts:
        keep = torch.zeros(height * width, dtype=torch.bool)
        keep[order[:count]] = True
        keep = keep.view(1, height, width).to(image.device)
        deleted.append(torch.where(keep, background, image))
        inserted.append(torch.where(keep, image, background))
    probs = probability(torch.stack(deleted + inserted)).float().cpu().numpy()
    xs = np.linspace(0.0, 1.0, steps + 1)
    return float(np.trapezoid(probs[:steps + 1], xs)), float(np.trapezoid(probs[steps + 1:], xs))


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho between two maps; 0 when either is constant (nothing to rank)."""
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def layers_top_down(model: nn.Module, scope: str = "") -> list[str]:
    """Names of the model's Conv2d and Linear layers (those under the submodule `scope`, when given), output
    side first (registration order reversed)."""
    return [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
            and (not scope or name == scope or name.startswith(scope + "."))][::-1]


def cascading_randomisation(model: nn.Module, seed: int = 0, scope: str = ""):
    """Yields (layer name, model copy) with that layer and every layer above it re-initialised (the trained
    model is not touched); `scope` limits it to one submodule (the tower the explained score reads the image
    with). BatchNorm statistics are kept, as in Adebayo et al.'s weight randomisation."""
    randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        for name in layers_top_down(randomised, scope):
            modules[name].reset_parameters()
            yield name, randomised
    finally:
        torch.random.set_rng_state(generator_state)
