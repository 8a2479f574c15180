"""The built-in Show-Attend-Tell captioner behind the Captioner interface."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from models.captioning.checkpoint import load_captioner
from models.captioning.decoding import beam_search
from models.images import images_to_batch
from models.repository import BUILTIN, ModelDetails, ModelEntry
from models.shapesworld.world_check import warning_for, warnings_for
from models.training import LoadedModel


class BuiltinCaptioner:
    attention_note = ""

    def __init__(self, loaded: LoadedModel, source: str, length_penalty: float = 1.0, name: str = "captioning") -> None:
        self.name = name
        self.model = loaded.model
        # The network batches run on: `self.model`, or its copy with a deployment's speed-ups (`accelerate`).
        self.served = self.model
        self.image_size = self.model.config.image_size
        self.length_penalty = length_penalty
        self.acceleration = None
        self.details = ModelDetails(BUILTIN, source, loaded.sha256, loaded.metrics, loaded.parameter_count,
                                    fingerprint=loaded.sha256, architecture="show-attend-tell")

    def prepare(self, image: Image.Image) -> torch.Tensor:
        return images_to_batch([np.asarray(image)], self.image_size)[0]

    def input_warnings(self, image: Image.Image) -> list[str]:
        return warning_for(self.name, image)

    def input_warnings_each(self, images: list[Image.Image]) -> list[list[str]]:
        return warnings_for(self.name, images)

    def accelerate(self, acceleration, max_batch_size: int) -> None:
        """Apply a deployment's speed-ups (services/runtime/acceleration.py): layout, compiled encoder
        (compiled here for every batch size up to `max_batch_size`), autocast around decoding."""
        self.acceleration = acceleration
        served = acceleration.served_copy(self.model)  # self.model stays as loaded, for explanations
        served.encode = acceleration.encoder(served.encode, self.image_size, max_batch_size,
                                             next(served.parameters()).device)
        self.served = served

    def caption(self, pixels, beam_sizes, max_lengths, on_settled=None):
        device = next(self.model.parameters()).device
        pixels = pixels.to(device)
        if self.acceleration is None:
            return beam_search(self.served, pixels, beam_sizes, max_lengths, self.length_penalty, on_settled=on_settled)
        with self.acceleration.autocasting(device):
            return beam_search(self.served, self.acceleration.images(pixels), beam_sizes, max_lengths,
                               self.length_penalty, on_settled=on_settled)


def load(entry: ModelEntry, device) -> BuiltinCaptioner:
    loaded = load_captioner(entry.path.stem, directory=entry.path.parent, device=device)
    return BuiltinCaptioner(loaded, str(entry.path), float(entry.option("length_penalty", 1.0)), entry.name)
