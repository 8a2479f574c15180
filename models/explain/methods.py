"""One table of saliency methods by name, so the services, the CLI's names and the measurements agree.

`explain(method, target, images, options)` -> maps [N,H,W] (float, CPU) at the images' resolution.
Methods that need something only some targets have (`cam`: a pooled linear head; `attention`: a
decoder's attention; `attention_rollout`: a ViT's self-attention) raise `ValueError` for the others, as do
methods a target lists in `unsupported` (with the reason); `why_not(method, target)` says beforehand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from models.explain import attribution
from models.explain.budget import Budget

METHODS = ("grad_cam", "guided_grad_cam", "guided_backprop", "gradient", "gradient_squared", "occlusion",
           "cam", "attention", "attention_rollout")
# Methods only some targets have (the target defines a method of that name).
OWN_METHODS = ("cam", "attention", "attention_rollout")
DEFAULT_OCCLUSION_WINDOW_PX = 8
DEFAULT_OCCLUSION_STRIDE_PX = 4
# The defaults are for the built-ins' 64 px input; a larger input (224 px for most Hugging Face ViTs) gets
# the same share of its side (an eighth, stride a sixteenth), so the default sweep stays 15 x 15 positions.
DEFAULT_INPUT_SIDE_PX = 64


def default_occlusion(side: int) -> tuple[int, int]:
    """(window, stride) in pixels for an input whose shorter side is `side`."""
    scale = side / DEFAULT_INPUT_SIDE_PX
    return (max(1, round(DEFAULT_OCCLUSION_WINDOW_PX * scale)), max(1, round(DEFAULT_OCCLUSION_STRIDE_PX * scale)))


@dataclass
class Options:
    # 0 = the default for the input's size (default_occlusion): 8 and 4 px on a 64 px input.
    occlusion_window_px: int = 0
    occlusion_stride_px: int = 0
    budget: Budget = field(default_factory=Budget)


def why_not(method: str, target) -> str:
    """Why `method` does not apply to `target`, or "" when it does."""
    if method not in METHODS:
        return f"unknown method {method!r}; known: {', '.join(METHODS)}"
    reason = getattr(target, "unsupported", {}).get(method, "")
    if reason:
        return reason
    if method in OWN_METHODS and not hasattr(target, method):
        return f"{type(target).__name__} has no {method.replace('_', ' ')}"
    return ""


def applies(method: str, target) -> bool:
    return not why_not(method, target)


def explain(method: str, target, images: torch.Tensor, options: Options | None = None) -> torch.Tensor:
    options = options or Options()
    reason = why_not(method, target)
    if reason:
        raise ValueError(f"method {method!r} does not apply: {reason}")
    if method == "grad_cam":
        maps = attribution.grad_cam(target, images, target.layer, getattr(target, "capture", "output"),
                                    getattr(target, "to_grid", None))
    elif method == "guided_grad_cam":
        maps = attribution.guided_grad_cam(target, images, target.model, target.layer)
    elif method == "guided_backprop":
        maps = attribution.guided_backprop(target, images, target.model)
    elif method == "gradient":
        maps = attribution.input_gradient(target, images, "abs")
    elif method == "gradient_squared":
        maps = attribution.input_gradient(target, images, "squared")
    elif method == "occlusion":
        window, stride = default_occlusion(min(images.shape[-2:]))
        maps = attribution.occlusion(target, images, options.occlusion_window_px or window,
                                     options.occlusion_stride_px or stride, options.budget,
                                     field="options.occlusion_stride_px")
    elif method == "cam":
        maps = target.cam(images)
    elif method == "attention_rollout":
        maps = target.attention_rollout(images)
    else:
        maps = target.attention(images)
    return maps.detach().float().cpu()
