"""The built-in ShapesWorld sound localiser behind the SoundLocalizer interface."""

from __future__ import annotations

import numpy as np
import torch

from models.audio.localize import Localization, load_localizer, localize
from models.explain.targets import SoundTarget
from models.images import images_to_batch
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

    def explain_pixels(self, image: np.ndarray) -> torch.Tensor:
        """The picture as ExplainLocalization's methods take it: [1, 3, size, size] in [0, 1]."""
        return images_to_batch([image], self.model.config.image_size).to(self.device)

    def explain_target(self, samples: np.ndarray) -> SoundTarget:
        """The score ExplainLocalization explains for a clip (mono, at `sample_rate`)."""
        return SoundTarget.of(self.model, torch.from_numpy(np.asarray(samples, np.float32)).to(self.device))

    def localize(self, images: list[np.ndarray], clips: list[np.ndarray]) -> list[Localization]:
        return localize(self.model, images, clips, self.device)


def load(entry: ModelEntry, device) -> BuiltinLocalizer:
    return BuiltinLocalizer(entry, device)
