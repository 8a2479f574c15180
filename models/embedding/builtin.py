"""The built-in ShapesWorld joint embedding behind the ImageTextEmbedder interface."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from models.embedding.checkpoint import load_embedder
from models.embedding.tokenizer import words_of
from models.images import images_to_batch
from models.repository import BUILTIN, ModelDetails, ModelEntry
from models.shapesworld.world_check import warning_for, warnings_for


class BuiltinEmbedder:
    def __init__(self, entry: ModelEntry, device) -> None:
        loaded = load_embedder(entry.path.stem, directory=entry.path.parent, device=device)
        self.name = entry.name
        self.model = loaded.model
        self.device = torch.device(device)
        self.acceleration = None
        self._encode_images = self.model.encode_images
        self.dimension = int(self.model.config.dim)
        self.image_size = self.model.config.image_size
        self.vocabulary = set(self.model.config.vocabulary)
        self.details = ModelDetails(BUILTIN, str(entry.path), loaded.sha256, loaded.metrics, loaded.parameter_count,
                                    fingerprint=loaded.sha256, architecture="cnn + gru dual encoder")

    def prepare(self, image: Image.Image) -> np.ndarray:
        # The pixels as they are: embed_images converts (and resizes) a whole batch at once.
        return np.asarray(image)

    def input_warnings(self, image: Image.Image) -> list[str]:
        return warning_for(self.name, image)

    def input_warnings_each(self, images: list[Image.Image]) -> list[list[str]]:
        return warnings_for(self.name, images)

    def accelerate(self, acceleration, max_batch_size: int) -> None:
        """Apply a deployment's speed-ups (services/runtime/acceleration.py); a compiled encoder is
        compiled here for every batch size up to `max_batch_size`."""
        self.acceleration = acceleration
        served = acceleration.served_copy(self.model)  # self.model stays as loaded, for explanations
        self._encode_images = acceleration.encoder(served.encode_images, self.image_size, max_batch_size,
                                                   self.device)

    def embed_images(self, items: list[np.ndarray]) -> torch.Tensor:
        pixels = images_to_batch(items, self.image_size).to(self.device)
        if self.acceleration is None:
            return self._encode_images(pixels)
        with self.acceleration.autocasting(self.device):
            return self._encode_images(self.acceleration.images(pixels))

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        if self.acceleration is None:
            return self.model.encode_texts(texts)
        with self.acceleration.autocasting(self.device):
            return self.model.encode_texts(texts)

    def unknown_words(self, text: str) -> list[str]:
        return [w for w in words_of(text) if w not in self.vocabulary]


def load(entry: ModelEntry, device) -> BuiltinEmbedder:
    return BuiltinEmbedder(entry, device)
