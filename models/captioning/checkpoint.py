"""Loading the shipped captioner: safetensors weights + manifest entry, verified by the training harness."""

from __future__ import annotations

from pathlib import Path

import torch

from models.captioning.network import Captioner, CaptionerConfig
from models.training import LoadedModel, load_shipped

CHECKPOINT_NAME = "captioning"


def load_captioner(name: str = CHECKPOINT_NAME, directory: Path | None = None,
                   device: torch.device | str = "cpu") -> LoadedModel:
    """Checkpoint `name` in eval mode on `device`; its config (vocabulary included) rebuilds the network."""
    return load_shipped(name, lambda config: Captioner(CaptionerConfig.from_dict(config["model"])),
                        directory=directory, device=device)
