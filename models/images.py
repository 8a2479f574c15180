"""Decoded images to the float batches the networks take."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def images_to_batch(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """uint8 HxWx3 images of any sizes -> float [B,3,size,size] in [0,1] (antialiased bilinear resize)."""
    tensors = []
    for image in images:
        t = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)[None]
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        tensors.append(t.clamp_(0.0, 1.0))
    return torch.cat(tensors, 0)
