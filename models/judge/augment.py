"""Batched, seeded image perturbations that make the judge robust to renderers other than ours and to
generated images: small affine changes (scale, aspect, shift, rotation), blur, down-up sampling,
colour gain/offset jitter and pixel noise. All torch ops on a whole batch; `generator` decides
everything, so a step's batch is reproducible from the step alone.

Kept small enough that no label changes: scale within +-9 % keeps small (10-15 px) and large
(20-28 px) apart, colour jitter is far below the distance between the six colours, and the
rotation (+-4 degrees) keeps a triangle apex up.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur (sigma in px; 0 leaves an image unchanged)."""
    n, c, h, w = images.shape
    radius = 3
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-(x[None] ** 2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [n, k]; sigma ~ 0 gives a delta
    kernel = kernel.repeat_interleave(c, dim=0)  # [n*c, k]
    flat = F.pad(images.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="replicate")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=n * c)
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


def augment(images: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """images: float [N,3,H,W] in [0,1] -> perturbed copy in [0,1]."""
    n, _, h, w = images.shape
    g = generator
    out = images

    # Geometry: scale, aspect (vertical only), rotation and shift, on 70 % of the images.
    apply = (torch.rand(n, generator=g) < 0.7).float()
    scale = 1 + apply * _uniform(n, -0.09, 0.09, g) * strength
    aspect = 1 + apply * _uniform(n, -0.07, 0.07, g) * strength
    angle = apply * _uniform(n, -4.0, 4.0, g) * strength * math.pi / 180
    shift = apply[:, None] * _uniform(2 * n, -3.0, 3.0, g).reshape(n, 2) * strength * 2 / w
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([cos / scale, -sin / scale, shift[:, 0]], dim=1),
        torch.stack([sin / (scale * aspect), cos / (scale * aspect), shift[:, 1]], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(out.shape), align_corners=False)
    out = F.grid_sample(out, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # Blur on 40 %, down-and-up sampling on 15 %.
    sigma = (torch.rand(n, generator=g) < 0.4).float() * _uniform(n, 0.3, 1.2, g) * strength
    out = gaussian_blur(out, sigma)
    low = torch.rand(n, generator=g) < 0.15 * strength
    if low.any():
        small = F.interpolate(out[low], scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
        out = out.clone()
        out[low] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)

    # Colour: overall brightness, per-channel gain and offset.
    brightness = 1 + _uniform(n, -0.1, 0.1, g) * strength
    gain = 1 + _uniform(3 * n, -0.06, 0.06, g).reshape(n, 3) * strength
    offset = _uniform(3 * n, -0.03, 0.03, g).reshape(n, 3) * strength
    out = out * (brightness[:, None] * gain)[:, :, None, None] + offset[:, :, None, None]

    # Pixel noise, sigma up to 12/255.
    noise = _uniform(n, 0.0, 12 / 255, g) * strength
    out = out + noise[:, None, None, None] * torch.randn(out.shape, generator=g)
    return out.clamp_(0.0, 1.0)
