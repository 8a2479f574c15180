"""The built-in ShapesWorld sound localiser behind the SoundLocalizer interface."""

from __future__ import annotations

import numpy as np
import torch

from models.audio.localize import Localization, load_localizer, localize
from models.repository import BUILTIN, ModelDetails, ModelEntry
from models.shapesworld.world_check import warning_for


class BuiltinLocalizer:
    def __init__(self, entry: ModelEntry, device) -> None:
        loaded = load_localizer(entry.path.stem, checkpoint_dir=entry.path.parent, device=device)
        self.name = entry.name
        self.model = loaded.model
        self.device = torch.device(device)
        self.sample_rate = int(self.model.config.sample_rate)
        self.min_samples = int(self.model.config.n_fft)
        self.details = ModelDetails(BUILTIN, str(entry.path), loaded.sha256, loaded.metrics, loaded.parameter_count,
                                    fingerprint=loaded.sha256, architecture="audio-visual cosine map")

    def input_warnings(self, image: np.ndarray) -> list[str]:
        return warning_for(self.name, image)

    def localize(self, images: list[np.ndarray], clips: list[np.ndarray]) -> list[Localization]:
        return localize(self.model, images, clips, self.device)


def load(entry: ModelEntry, device) -> BuiltinLocalizer:
    return BuiltinLocalizer(entry, device)
