"""One table of saliency methods by name, so the services, the CLI's names and the measurements agree.

`explain(method, target, images, options)` -> maps [N,H,W] (float, CPU) at the images' resolution.
Methods that need something only some targets have (`cam`: a pooled linear head; `attention`: a
decoder's attention) raise `ValueError` for the others; `applies(method, target)` says beforehand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from models.explain import attribution
from models.explain.budget import Budget

METHODS = ("grad_cam", "guided_grad_cam", "guided_backprop", "gradient", "gradient_squared", "occlusion",
           "cam", "attention")
DEFAULT_OCCLUSION_WINDOW_PX = 8
DEFAULT_OCCLUSION_STRIDE_PX = 4


@dataclass
class Options:
    occlusion_window_px: int = DEFAULT_OCCLUSION_WINDOW_PX
    occlusion_stride_px: int = DEFAULT_OCCLUSION_STRIDE_PX
    budget: Budget = field(default_factory=Budget)


def applies(method: str, target) -> bool:
    if method == "cam":
        return hasattr(target, "cam")
    if method == "attention":
        return hasattr(target, "attention")
    return method in METHODS


def explain(method: str, target, images: torch.Tensor, options: Options | None = None) -> torch.Tensor:
    options = options or Options()
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if not applies(method, target):
        raise ValueError(f"method {method!r} does not apply to {type(target).__name__}")
    if method == "grad_cam":
        maps = attribution.grad_cam(target, images, target.layer)
    elif method == "guided_grad_cam":
        maps = attribution.guided_grad_cam(target, images, target.model, target.layer)
    elif method == "guided_backprop":
        maps = attribution.guided_backprop(target, images, target.model)
    elif method == "gradient":
        maps = attribution.input_gradient(target, images, "abs")
    elif method == "gradient_squared":
        maps = attribution.input_gradient(target, images, "squared")
    elif method == "occlusion":
        maps = attribution.occlusion(target, images, options.occlusion_window_px, options.occlusion_stride_px,
                                     options.budget, field="options.occlusion_stride_px")
    elif method == "cam":
        maps = target.cam(images)
    else:
        maps = target.attention(images)
    return maps.detach().float().cpu()
