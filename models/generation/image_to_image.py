"""The image-to-image models the Generation service serves, behind one interface.

    from models.generation.image_to_image import load_image_to_image, available_image_to_image_models
    model = load_image_to_image("sketch2photo", device)   # or "day2night", "night2day"
    photos = model.translate(sketches)                    # float [N, 3, 64, 64] in [0, 1] -> same

`sketch2photo` is a pix2pix U-Net (pix2pix.py); `day2night` and `night2day` are
the two generators of one CycleGAN (cyclegan.py), each in its own checkpoint
file. Every checkpoint's manifest config names its network (`kind`), and the
loader refuses a checkpoint whose kind is not the one its name promises.

`translate` is the one code path for serving and for evaluation
(evaluate_image_to_image measures exactly this method): the network is in
eval mode, its norms keep no running statistics and it has no active dropout,
so an image's translation depends neither on the mode nor on its batch-mates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from models.generation import cyclegan, pix2pix
from models.repository import BUILTIN, ModelDetails, ModelEntry
from models.shapesworld.world_check import warning_for
from models.training import CHECKPOINT_DIR, CheckpointError, load_model, read_manifest

# Name -> (network kind, builder from the manifest config).
MODELS = {
    pix2pix.CHECKPOINT_NAME: (pix2pix.KIND, pix2pix.build_generator),
    **{name: (cyclegan.KIND, cyclegan.build_generator) for name in cyclegan.DIRECTIONS},
}
IMAGE_SIZE = 64
# What each translator's input is: sketch2photo reads sketches, day2night day scenes, night2day night ones.
EXPECTS = {pix2pix.CHECKPOINT_NAME: "sketch", **{name: ends[0] for name, ends in cyclegan.DIRECTIONS.items()}}


class ImageToImageModel:
    """A loaded translator in eval mode: `translate`, `name`, `manifest_entry`, `network`."""

    def __init__(self, name: str, network: nn.Module, manifest_entry: dict | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.name = name
        self.device = torch.device(device)
        # Eval mode only: the training scripts wrap the very network they are training.
        self.network = network.to(self.device).eval()
        self.manifest_entry = manifest_entry or {}

    def translate(self, batch: torch.Tensor) -> torch.Tensor:
        """float [N, 3, 64, 64] in [0, 1] -> float [N, 3, 64, 64] in [0, 1], on the input's device."""
        if batch.dim() != 4 or tuple(batch.shape[1:]) != (3, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"{self.name} translates [N, 3, {IMAGE_SIZE}, {IMAGE_SIZE}] batches, "
                             f"got {tuple(batch.shape)}")
        if not batch.is_floating_point():
            raise ValueError(f"{self.name} expects float images in [0, 1], got {batch.dtype}")
        # Eval mode is set at load time; setting it again guards against a caller that trained it since.
        self.network.eval()
        with torch.no_grad():
            x = batch.to(self.device, torch.float32).clamp(0.0, 1.0) * 2.0 - 1.0
            y = self.network(x)
        return ((y + 1.0) / 2.0).clamp(0.0, 1.0).to(batch.device)

    def work_size(self, width: int, height: int) -> tuple[int, int]:
        """The size an image of any size is run at: the training size."""
        return IMAGE_SIZE, IMAGE_SIZE

    def input_warnings(self, image: Image.Image) -> list[str]:
        """A warning when `image` is plainly not the ShapesWorld input this translator was trained on."""
        return warning_for(self.name, image, EXPECTS.get(self.name, "scene"))

    def translate_images(self, images: list) -> list[np.ndarray]:
        """PIL RGB images of any sizes -> uint8 [H, W, 3] translations at each input's size: the network
        works at its training size (bicubic resize there and back)."""
        batch = torch.stack([
            torch.from_numpy(np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC), np.float32))
            .permute(2, 0, 1) / 255.0 for image in images]).to(self.device)
        pixels = (self.translate(batch).clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = []
        for image, p in zip(images, pixels):
            translated = Image.fromarray(p)
            if translated.size != image.size:
                translated = translated.resize(image.size, Image.BICUBIC)
            out.append(np.asarray(translated))
        return out

    def __repr__(self) -> str:
        return f"ImageToImageModel({self.name!r}, device={self.device})"


def load_image_to_image(name: str, device: str | torch.device = "cpu",
                        directory: Path | None = None) -> ImageToImageModel:
    """The shipped checkpoint `name` (see MODELS) on `device`. KeyError for an unknown name,
    CheckpointError for a missing, corrupt or mismatching checkpoint."""
    if name not in MODELS:
        raise KeyError(f"no image-to-image model {name!r}; known: {', '.join(MODELS)}")
    kind, build = MODELS[name]

    def checked_build(config: dict) -> nn.Module:
        if config.get("kind") != kind:
            raise CheckpointError(f"checkpoint {name!r} holds a {config.get('kind')!r} network, expected {kind!r}")
        return build(config)

    network, entry = load_model(name, checked_build, directory=directory)
    entry.pop("extra_tensors", None)
    model = ImageToImageModel(name, network.requires_grad_(False), entry, device)
    model.details = ModelDetails(BUILTIN, str(Path(directory or CHECKPOINT_DIR) / entry.get("file", f"{name}.safetensors")),
                                 entry.get("sha256", ""), dict(entry.get("metrics", {})),
                                 entry.get("parameter_count") or sum(p.numel() for p in network.parameters()),
                                 fingerprint=entry.get("sha256", ""), architecture=kind)
    return model


def load(entry: ModelEntry, device) -> ImageToImageModel:
    """A model-repository entry of family `builtin` (the translator is chosen by the checkpoint's name)."""
    return load_image_to_image(entry.path.stem, device, entry.path.parent)


def available_image_to_image_models(directory: Path | None = None) -> list[str]:
    """The names whose checkpoints are in the manifest and on disk (not verified: loading does that)."""
    directory = Path(directory or CHECKPOINT_DIR)
    manifest = read_manifest(directory)
    return [name for name in MODELS
            if name in manifest and (directory / manifest[name].get("file", f"{name}.safetensors")).exists()]
