"""Pictures of what a CNN has learnt, independent of one input: class visualisation by gradient ascent,
first-layer filters, and the maximally activating patches of a chosen layer and channel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.explain.attribution import gradients_on
from models.explain.budget import Budget


@dataclass
class ClassVisualisation:
    image: torch.Tensor  # [3,H,W] in [0,1]
    scores: list[float]  # the target score after each step


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(round(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                 groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                    groups=c)


def class_visualisation(score: Callable[[torch.Tensor], torch.Tensor], size: int, steps: int,
                        budget: Budget | None = None, learning_rate: float = 0.05, l2: float = 1e-3,
                        blur_every: int = 4, blur_sigma: float = 0.5, jitter_px: int = 2, seed: int = 0,
                        device: torch.device | str = "cpu") -> ClassVisualisation:
    """Gradient ascent on the input (Simonyan et al., 2014) with Yosinski et al.'s (2015) regularisers:
    L2 decay towards mid-grey, a small Gaussian blur every few steps and random jitter, pixels kept in [0,1].
    Adam on the pixels; deterministic for a seed."""
    budget = budget or Budget()
    budget.check_steps(steps, "steps")
    generator = torch.Generator().manual_seed(seed)
    start = 0.5 + 0.05 * torch.randn(1, 3, size, size, generator=generator)
    shifts = torch.randint(-jitter_px, jitter_px + 1, (steps, 2), generator=generator).tolist()
    scores: list[float] = []
    with gradients_on():
        x = start.to(device).requires_grad_(True)
        optimiser = torch.optim.Adam([x], lr=learning_rate)
        for step in range(steps):
            budget.check_time("steps")
            dy, dx = shifts[step]
            shifted = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            value = score(shifted).sum()
            loss = -value + l2 * (x - 0.5).pow(2).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                if blur_every and (step + 1) % blur_every == 0:
                    x.copy_(_gaussian_blur(x, blur_sigma))
                x.clamp_(0.0, 1.0)
            scores.append(float(value))
    return ClassVisualisation(x.detach()[0].cpu(), scores)


def first_conv(model: nn.Module) -> nn.Conv2d:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ValueError("the model has no Conv2d layer")


def filter_pictures(conv: nn.Conv2d) -> np.ndarray:
    """The first layer's filters as uint8 [K, kh, kw, 3] RGB pictures, each min-max normalised on its own
    (a filter's colour pattern is what it looks for; its scale is the next layer's business)."""
    weights = conv.weight.detach().float().cpu()
    if weights.shape[1] != 3:
        raise ValueError(f"filter pictures need a 3-channel input layer, got {weights.shape[1]} channels")
    low = weights.flatten(1).min(1).values[:, None, None, None]
    high = weights.flatten(1).max(1).values[:, None, None, None]
    scaled = (weights - low) / (high - low).clamp(min=1e-12)
    return (scaled.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


@dataclass
class Patch:
    scene: int  # index into the scenes given
    activation: float
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in input pixels, clipped, x1/y1 exclusive
    unit_xy: tuple[int, int]  # the activation's position in the layer's grid


def receptive_field(convs: list[nn.Conv2d]) -> tuple[float, float, float]:
    """(size, jump, first centre) in input pixels of a unit after a chain of convolutions (Araujo et al., 2019)."""
    size, jump, start = 1.0, 1.0, 0.5
    for conv in convs:
        k, s, p, d = conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]
        size += (k - 1) * d * jump
        start += ((k - 1) / 2 * d - p) * jump
        jump *= s
    return size, jump, start


@torch.no_grad()
def top_patches(forward: Callable[[torch.Tensor], object], model: nn.Module, layer: nn.Module, channel: int,
                scenes: torch.Tensor, top_k: int, budget: Budget | None = None,
                batch_size: int = 128) -> list[Patch]:
    """The `top_k` strongest activations of `channel` at `layer` over `scenes` [N,3,H,W] (one per scene, at
    its strongest position), each with the receptive-field box it sees in the input."""
    budget = budget or Budget()
    budget.check_scenes(len(scenes), "scene_count")
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    try:
        peaks, where = [], []
        for start in range(0, len(scenes), batch_size):
            budget.check_time("scene_count")
            captured.clear()
            forward(scenes[start:start + batch_size])
            acts = captured[-1]
            if not 0 <= channel < acts.shape[1]:
                raise ValueError(f"channel: {channel} is outside 0..{acts.shape[1] - 1} for this layer")
            flat = acts[:, channel].flatten(1)
            value, index = flat.max(1)
            peaks.append(value.cpu())
            where.append(torch.stack([index // acts.shape[3], index % acts.shape[3]], 1).cpu())
    finally:
        handle.remove()
    peak, position = torch.cat(peaks), torch.cat(where)
    size, jump, first = receptive_field(convs_before(forward, model, layer, scenes[:1]))
    height, width = scenes.shape[-2:]
    out = []
    for i in peak.argsort(descending=True)[:top_k].tolist():
        y, x = position[i].tolist()
        cy, cx = first + y * jump, first + x * jump
        box = (max(0, int(np.floor(cx - size / 2))), max(0, int(np.floor(cy - size / 2))),
               min(width, int(np.ceil(cx + size / 2))), min(height, int(np.ceil(cy + size / 2))))
        out.append(Patch(i, float(peak[i]), box, (x, y)))
    return out


def convs_before(forward, model: nn.Module, layer: nn.Module, sample: torch.Tensor) -> list[nn.Conv2d]:
    """The Conv2d modules of `model` that run before `layer`'s output exists, in forward order (one traced pass)."""
    order: list[nn.Conv2d] = []
    state = {"done": False}

    def record(module, _inputs, _output):
        if not state["done"]:
            order.append(module)

    def finish(_module, _inputs, _output):
        state["done"] = True

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks.append(layer.register_forward_hook(finish))
    try:
        forward(sample)
    finally:
        for h in hooks:
            h.remove()
    return order
