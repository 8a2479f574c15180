"""Loading the shipped captioner: safetensors weights + manifest entry, verified by the training harness."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.captioning.network import Captioner, CaptionerConfig
from models.training import CheckpointError, load_checkpoint

CHECKPOINT_NAME = "captioning"


@dataclass
class LoadedCaptioner:
    model: Captioner
    sha256: str
    metrics: dict = field(default_factory=dict)


def load_captioner(name: str = CHECKPOINT_NAME, directory: Path | None = None,
                   device: torch.device | str = "cpu") -> LoadedCaptioner:
    """Checkpoint `name` in eval mode on `device`; its config (vocabulary included) rebuilds the network."""
    state, entry = load_checkpoint(name, directory=directory)
    try:
        config = CaptionerConfig.from_dict(entry["config"]["model"])
        model = Captioner(config)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {name!r} does not match the captioner its config describes: {exc}") from None
    return LoadedCaptioner(model.to(device).eval(), entry.get("sha256", ""), dict(entry.get("metrics", {})))
