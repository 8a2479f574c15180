"""Loading the shipped joint embedding: safetensors weights + manifest entry, verified by the harness."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.embedding.network import EmbeddingConfig, JointEmbedding
from models.training import load_model

CHECKPOINT_NAME = "embedding"


@dataclass
class LoadedEmbedder:
    model: JointEmbedding
    sha256: str
    metrics: dict = field(default_factory=dict)


def load_embedder(name: str = CHECKPOINT_NAME, directory: Path | None = None,
                  device: torch.device | str = "cpu") -> LoadedEmbedder:
    """Checkpoint `name` in eval mode on `device`; its config (vocabulary included) rebuilds the network."""
    model, entry = load_model(name, lambda config: JointEmbedding(EmbeddingConfig.from_dict(config["model"])),
                              directory=directory, device=device)
    return LoadedEmbedder(model, entry.get("sha256", ""), dict(entry.get("metrics", {})))
