"""Loading the shipped captioner: safetensors weights + manifest entry, verified by the training harness."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.captioning.network import Captioner, CaptionerConfig
from models.training import load_model

CHECKPOINT_NAME = "captioning"


@dataclass
class LoadedCaptioner:
    model: Captioner
    sha256: str
    metrics: dict = field(default_factory=dict)


def load_captioner(name: str = CHECKPOINT_NAME, directory: Path | None = None,
                   device: torch.device | str = "cpu") -> LoadedCaptioner:
    """Checkpoint `name` in eval mode on `device`; its config (vocabulary included) rebuilds the network."""
    model, entry = load_model(name, lambda config: Captioner(CaptionerConfig.from_dict(config["model"])),
                              directory=directory, device=device)
    return LoadedCaptioner(model, entry.get("sha256", ""), dict(entry.get("metrics", {})))
