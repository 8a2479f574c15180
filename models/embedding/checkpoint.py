"""Loading the shipped joint embedding: safetensors weights + manifest entry, verified by the harness."""

from __future__ import annotations

from pathlib import Path

import torch

from models.embedding.network import EmbeddingConfig, JointEmbedding
from models.training import LoadedModel, load_shipped

CHECKPOINT_NAME = "embedding"


def load_embedder(name: str = CHECKPOINT_NAME, directory: Path | None = None,
                  device: torch.device | str = "cpu") -> LoadedModel:
    """Checkpoint `name` in eval mode on `device`; its config (vocabulary included) rebuilds the network."""
    return load_shipped(name, lambda config: JointEmbedding(EmbeddingConfig.from_dict(config["model"])),
                        directory=directory, device=device)
