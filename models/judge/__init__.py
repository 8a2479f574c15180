"""The reference judge: scores single-object ShapesWorld images by shape, colour, size and domain.

    from models.judge import load_judge
    judge = load_judge()                  # models/checkpoints/judge.safetensors, sha256 + config checked
    judge.predict(images)                 # {"shape": [...], "colour": [...], "size": [...], "domain": [...]}

`images`: float tensor [N,3,H,W] in [0,1], or uint8 [N,H,W,3] (numpy or torch), or a list of single
images in either layout; other sizes than 64x64 are resized. Train: ``python -m models.judge.train`` (make train-judge); measure:
``python -m models.judge.evaluate``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.judge.network import HEADS, JudgeConfig, JudgeNet
from models.training import load_checkpoint

CHECKPOINT_NAME = "judge"


def as_batch(images, image_size: int = 64) -> torch.Tensor:
    """float [N,3,S,S] in [0,1] from a float tensor [N,3,H,W] in [0,1] or uint8 NHWC (numpy or torch),
    or a list of such single images; a single image (3 dims) becomes a batch of one."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no images")
        parts = [torch.from_numpy(np.ascontiguousarray(im)) if isinstance(im, np.ndarray) else im for im in images]
        images = torch.stack(parts)
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a numpy array or a torch tensor, got {type(images).__name__}")
    if images.dim() == 3:
        images = images[None]
    if images.dtype == torch.uint8:
        if images.shape[-1] != 3:
            raise ValueError(f"uint8 images must be NHWC with 3 channels, got shape {tuple(images.shape)}")
        images = images.permute(0, 3, 1, 2).float().div(255.0)
    elif images.shape[1] != 3:
        raise ValueError(f"float images must be [N,3,H,W], got shape {tuple(images.shape)}")
    images = images.float()
    if images.shape[-2:] != (image_size, image_size):
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", antialias=True,
                               align_corners=False)
    return images.clamp(0.0, 1.0)


class Judge:
    """A loaded judge network in eval mode; see the module docstring."""

    def __init__(self, net: JudgeNet, entry: dict | None = None, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.entry = entry or {}
        self.config = net.config

    @torch.no_grad()
    def logits(self, images, batch_size: int = 512) -> dict[str, torch.Tensor]:
        batch = as_batch(images, self.config.image_size)
        parts = [self.net(batch[i:i + batch_size].to(self.device)) for i in range(0, len(batch), batch_size)]
        return {k: torch.cat([p[k] for p in parts]).cpu() for k in HEADS} if parts else {
            k: torch.zeros(0, len(v)) for k, v in HEADS.items()}

    def probabilities(self, images) -> dict[str, torch.Tensor]:
        return {k: v.softmax(dim=1) for k, v in self.logits(images).items()}

    def predict(self, images) -> dict[str, list[str]]:
        """Names per head: {"shape": [...], "colour": [...], "size": [...], "domain": [...]}."""
        return {k: [HEADS[k][i] for i in v.argmax(dim=1).tolist()] for k, v in self.logits(images).items()}


def load_judge(device: str | torch.device = "cpu", directory: Path | None = None) -> Judge:
    """The shipped judge (models/checkpoints/judge.safetensors); raises CheckpointError on a mismatch."""
    config = JudgeConfig()
    state, entry = load_checkpoint(CHECKPOINT_NAME, expected_config=config.to_dict(), directory=directory)
    net = JudgeNet(config)
    net.load_state_dict(state)
    return Judge(net, entry, device)


__all__ = ["CHECKPOINT_NAME", "HEADS", "Judge", "JudgeConfig", "JudgeNet", "as_batch", "load_judge"]
