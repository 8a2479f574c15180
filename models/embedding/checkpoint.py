"""Loading the shipped joint embedding: safetensors weights + manifest entry, verified by the harness."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.embedding.network import EmbeddingConfig, JointEmbedding
from models.training import CheckpointError, load_checkpoint

CHECKPOINT_NAME = "embedding"


@dataclass
class LoadedEmbedder:
    model: JointEmbedding
    sha256: str
    metrics: dict = field(default_factory=dict)


def load_embedder(name: str = CHECKPOINT_NAME, directory: Path | None = None,
                  device: torch.device | str = "cpu") -> LoadedEmbedder:
    """Checkpoint `name` in eval mode on `device`; its config (vocabulary included) rebuilds the network."""
    state, entry = load_checkpoint(name, directory=directory)
    try:
        config = EmbeddingConfig.from_dict(entry["config"]["model"])
        model = JointEmbedding(config)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {name!r} does not match the embedding its config describes: {exc}") from None
    return LoadedEmbedder(model.to(device).eval(), entry.get("sha256", ""), dict(entry.get("metrics", {})))
