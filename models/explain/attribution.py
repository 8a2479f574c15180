"""Saliency maps for any differentiable score: Grad-CAM, guided back-propagation, guided Grad-CAM,
input-gradient saliency, occlusion and CAM.

Every method takes a *score function* `score(images [N,3,H,W]) -> [N]` (a class logit, a word's
log-probability, a cosine similarity: see targets.py) and returns maps [N,H,W] at the input's
resolution, larger = more evidence for the score. The networks are never changed: activations and
gradients are read with forward hooks, and guided back-propagation swaps the backward rule of the
network's `nn.ReLU` modules only for the duration of one call (functional `F.relu` calls inside a
`forward` keep the plain rule; the docs list where that applies).

References: Grad-CAM (Selvaraju et al., 2017), guided back-propagation (Springenberg et al., 2015),
saliency by input gradients (Simonyan et al., 2014), occlusion (Zeiler & Fergus, 2014),
CAM (Zhou et al., 2016).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from models.explain.budget import Budget, occlusion_positions

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def gradients_on() -> Iterator[None]:
    """Gradients enabled even inside a service's `torch.inference_mode` batch thread."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N,h,w] -> [N,H,W], bilinear."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _input(images: torch.Tensor) -> torch.Tensor:
    return images.detach().clone().float().requires_grad_(True)


def _score_and_activations(score: ScoreFn, images: torch.Tensor, layer: nn.Module,
                           capture: str = "output") -> tuple[torch.Tensor, torch.Tensor]:
    """The scores and `layer`'s output (or, with capture="input", the hidden states entering it)."""
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)

    def pre_hook(_module, args, kwargs):
        captured.append(args[0] if args else kwargs["hidden_states"])

    handle = (layer.register_forward_pre_hook(pre_hook, with_kwargs=True) if capture == "input"
              else layer.register_forward_hook(hook))
    try:
        scores = score(images)
    finally:
        handle.remove()
    if not captured:
        raise ValueError("the chosen layer did not run in the score's forward pass")
    return scores, captured[-1]


def grad_cam(score: ScoreFn, images: torch.Tensor, layer: nn.Module, capture: str = "output",
             to_grid: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor] | None = None) -> torch.Tensor:
    """ReLU(sum_k alpha_k A_k), alpha_k = spatial mean of d score / d A_k, for `layer`'s output A [N,K,h,w].
    A transformer's tokens [N,T,D] are first laid out as a grid by `to_grid` (its patch tokens, [N,D,h,w])."""
    size = tuple(images.shape[-2:])
    with gradients_on():
        x = _input(images)
        scores, acts = _score_and_activations(score, x, layer, capture)
        (grads,) = torch.autograd.grad(scores.sum(), acts)
        if to_grid is not None:
            acts, grads = to_grid(acts, size), to_grid(grads, size)
        weights = grads.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * acts).sum(1)).detach()
    return upsample(cam, size)


class _GuidedReLU(torch.autograd.Function):
    """ReLU forward; backward passes only positive gradients through positive inputs."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x > 0).to(grad.dtype) * (grad > 0).to(grad.dtype)


@contextlib.contextmanager
def guided_relus(model: nn.Module) -> Iterator[int]:
    """Within the block, every `nn.ReLU` of `model` back-propagates by the guided rule (this instance only)."""
    patched = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    for module in patched:
        module.forward = _GuidedReLU.apply  # instance attribute shadows the class's forward
    try:
        yield len(patched)
    finally:
        for module in patched:
            del module.forward


def input_gradient(score: ScoreFn, images: torch.Tensor, mode: str = "abs") -> torch.Tensor:
    """|d score / d x| (max over colour channels, Simonyan et al.) or (d score / d x)^2 summed over channels."""
    with gradients_on():
        x = _input(images)
        (grads,) = torch.autograd.grad(score(x).sum(), x)
    if mode == "abs":
        return grads.abs().amax(1)
    if mode == "squared":
        return grads.pow(2).sum(1)
    raise ValueError(f"gradient mode must be 'abs' or 'squared', got {mode!r}")


def guided_backprop(score: ScoreFn, images: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Guided back-propagation: the input gradient with guided ReLUs, max of |g| over channels."""
    with gradients_on(), guided_relus(model):
        x = _input(images)
        (grads,) = torch.autograd.grad(score(x).sum(), x)
    return grads.clamp(min=0).amax(1)


def guided_grad_cam(score: ScoreFn, images: torch.Tensor, model: nn.Module, layer: nn.Module) -> torch.Tensor:
    """Guided back-propagation times the (upsampled) Grad-CAM map."""
    return guided_backprop(score, images, model) * grad_cam(score, images, layer)


def border_baseline(images: torch.Tensor) -> torch.Tensor:
    """Per-image background colour [N,3,1,1]: the median of the border pixels (ShapesWorld's backgrounds are
    flat, and so are most photos' margins more than their middles)."""
    border = torch.cat([images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], dim=2)
    return border.median(dim=2).values[:, :, None, None]


@torch.no_grad()
def occlusion(score: ScoreFn, images: torch.Tensor, window: int, stride: int, budget: Budget | None = None,
              baseline: torch.Tensor | None = None, batch_size: int = 64, field: str = "occlusion") -> torch.Tensor:
    """Score drop when a `window` x `window` square is painted with the baseline colour, averaged over the
    windows covering each pixel (Zeiler & Fergus). One forward pass per window position, batched."""
    if window < 1 or stride < 1:
        raise ValueError(f"{field}: window and stride must be positive")
    n, _, height, width = images.shape
    window = min(window, height, width)
    budget = budget or Budget()
    positions = occlusion_positions(height, width, window, stride)
    budget.check_evaluations(positions * n, field)
    ys = sorted({min(y, height - window) for y in range(0, max(1, height - window + stride), stride)})
    xs = sorted({min(x, width - window) for x in range(0, max(1, width - window + stride), stride)})
    corners = [(y, x) for y in ys for x in xs]
    fill = border_baseline(images) if baseline is None else baseline
    heat = torch.zeros(n, height, width, device=images.device)
    count = torch.zeros(height, width, device=images.device)
    for y, x in corners:
        count[y:y + window, x:x + window] += 1
    for i in range(n):
        image = images[i:i + 1]
        base = score(image).reshape(())
        for start in range(0, len(corners), batch_size):
            budget.check_time(field)
            chunk = corners[start:start + batch_size]
            batch = image.repeat(len(chunk), 1, 1, 1)
            for j, (y, x) in enumerate(chunk):
                batch[j, :, y:y + window, x:x + window] = fill[i]
            drops = base - score(batch).reshape(-1)
            for j, (y, x) in enumerate(chunk):
                heat[i, y:y + window, x:x + window] += drops[j]
    return heat / count.clamp(min=1)


def class_activation_map(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """CAM: sum_k w_k F_k for features [N,K,h,w] and per-image class weights [N,K] of a global-average-pooled
    linear head (Zhou et al.); positive and negative evidence both kept (the caller may clamp)."""
    return torch.einsum("nkhw,nk->nhw", features, weights)
