"""Audio-visual training and evaluation examples from ShapesWorld.

Images and masks come from rendered scenes; clips are built from the objects'
signatures so that any object of a scene (not only the one its seed picked)
can be the sounding one, and so that silence, pure noise and the sound of an
absent object are available as "nothing here sounds like this" examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.shapesworld.audio import noisy_clip, object_signature
from models.shapesworld.render import render_scene
from models.shapesworld.spec import CLIP_SAMPLES, COLOUR_NAMES, SHAPES, SIZES, SNR_DB_RANGE

# Every (shape, colour, size) an object can have; its index is the object's identity.
IDENTITIES: tuple[tuple[str, str, str], ...] = tuple(
    (shape, colour, size) for shape in SHAPES for colour in COLOUR_NAMES for size in SIZES
)
IDENTITY_INDEX = {identity: i for i, identity in enumerate(IDENTITIES)}


def identity_of(obj) -> int:
    return IDENTITY_INDEX[(obj.shape, obj.colour, obj.size)]


@dataclass
class ScenePool:
    """Pre-rendered scenes: images [N, 64, 64, 3] uint8, per-object masks [N, 2, 64, 64] bool
    (the second is empty for one-object scenes), identities [N, 2] (-1 when absent)."""

    seeds: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    identities: np.ndarray

    @classmethod
    def render(cls, seeds, objects: int | None = None, size: int = 64, progress=None) -> "ScenePool":
        seeds = np.asarray(list(seeds), dtype=np.int64)
        images = np.zeros((len(seeds), size, size, 3), np.uint8)
        masks = np.zeros((len(seeds), 2, size, size), bool)
        identities = np.full((len(seeds), 2), -1, np.int64)
        for i, seed in enumerate(seeds):
            scene = render_scene(int(seed), size=size, objects=objects)
            images[i] = scene.image
            for j, obj in enumerate(scene.objects):
                masks[i, j] = obj.mask
                identities[i, j] = identity_of(obj)
            if progress is not None:
                progress(1)
        return cls(seeds, images, masks, identities)

    def __len__(self) -> int:
        return len(self.seeds)


def signature_table() -> torch.Tensor:
    """[len(IDENTITIES), 16000] clean signatures."""
    return torch.from_numpy(np.stack([object_signature(*identity) for identity in IDENTITIES]))


def scene_clip(identity: int, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """The spec's clip for an object: its signature plus white noise at `snr_db`."""
    return noisy_clip(object_signature(*IDENTITIES[identity]), snr_db, rng.standard_normal(CLIP_SAMPLES))


@dataclass
class Batch:
    images: torch.Tensor  # uint8 [B, 64, 64, 3]
    clips: torch.Tensor  # float32 [B, 16000]
    # Per-pixel target at the network's map resolution: soft mask of the sounding
    # object, zeros for an absent object's sound, NaN for "no source" (silence/noise).
    targets: torch.Tensor  # float32 [B, h, w]
    # Identity of the clip's object (-1 for silence and noise).
    clip_identity: torch.Tensor  # int64 [B]
    # Identities present in each image, [B, 2] (-1 padding).
    image_identities: torch.Tensor


def training_batch(pool: ScenePool, signatures: torch.Tensor, batch_size: int, map_size: int,
                   rng: np.random.Generator, absent_fraction: float = 0.1, silent_fraction: float = 0.1) -> Batch:
    """Random scenes, each with the sound of one of its objects chosen at random (or of an absent object,
    or silence / pure noise), noise at an SNR drawn a little wider than the spec's, and a random
    circular shift so the encoder does not rely on the signatures' common starting phase."""
    index = rng.integers(len(pool), size=batch_size)
    identities = pool.identities[index]
    masks = pool.masks[index]
    count = (identities >= 0).sum(1)
    pick = (rng.random(batch_size) * count).astype(int)
    mode = rng.random(batch_size)
    silent = mode < silent_fraction
    absent = (mode >= silent_fraction) & (mode < silent_fraction + absent_fraction)

    clip_identity = identities[np.arange(batch_size), pick].copy()
    for i in np.nonzero(absent)[0]:
        while True:
            other = int(rng.integers(len(IDENTITIES)))
            if other not in identities[i]:
                clip_identity[i] = other
                break
    clip_identity[silent] = -1

    clean = signatures[np.maximum(clip_identity, 0)].clone()
    clean[torch.from_numpy(silent)] = 0.0
    shifts = rng.integers(CLIP_SAMPLES, size=batch_size)
    clean = torch.stack([torch.roll(c, int(s)) for c, s in zip(clean, shifts)])
    power = clean.square().mean(1, keepdim=True)
    snr_db = torch.from_numpy(rng.uniform(SNR_DB_RANGE[0] - 3, SNR_DB_RANGE[1] + 5, size=(batch_size, 1))).float()
    noise_std = torch.sqrt(power / 10.0 ** (snr_db / 10.0))
    # Silent rows: pure noise of a random level (a third exactly silent).
    levels = torch.from_numpy(10.0 ** rng.uniform(-4, -0.5, size=batch_size)).float()
    levels[torch.from_numpy(rng.random(batch_size) < 1 / 3)] = 0.0
    noise_std[torch.from_numpy(silent)] = levels[torch.from_numpy(silent)].unsqueeze(1)
    clips = clean + noise_std * torch.from_numpy(rng.standard_normal((batch_size, CLIP_SAMPLES))).float()

    mask = torch.from_numpy(masks[np.arange(batch_size), pick]).float()
    targets = F.adaptive_avg_pool2d(mask.unsqueeze(1), map_size).squeeze(1)
    targets[torch.from_numpy(absent)] = 0.0
    targets[torch.from_numpy(silent)] = float("nan")
    return Batch(
        images=torch.from_numpy(pool.images[index]),
        clips=clips,
        targets=targets,
        clip_identity=torch.from_numpy(clip_identity),
        image_identities=torch.from_numpy(identities),
    )

