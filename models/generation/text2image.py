"""GAN-INT-CLS text-to-image (Reed et al., 2016) at 64x64, sized for ShapesWorld.

The caption embedding (text_encoder.py) is compressed by a small dense layer,
concatenated with Gaussian noise and decoded by a DCGAN generator. The
matching-aware discriminator reduces the image to 4x4 features, appends the
compressed caption at every position, and scores (image, caption) pairs: it
is trained to accept real/matching pairs and to refuse real/mismatching and
fake/matching ones, so the generator is pushed to get every word right, not
only to look real.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from models.generation.text_encoder import TextEncoder, Tokenizer

CHECKPOINT_NAME = "text2image"


@dataclass(frozen=True)
class Text2ImageConfig:
    vocabulary: tuple[str, ...]
    # Classes of the text encoder's pretraining heads (name -> count).
    attribute_classes: dict[str, int] = field(default_factory=dict)
    word_dim: int = 32
    text_dim: int = 64
    compressed_dim: int = 32
    noise_dim: int = 64
    ngf: int = 32
    ndf: int = 32
    # Channel multipliers from 4x4 up to 32x32 (the 64x64 layer outputs RGB).
    multipliers: tuple[int, ...] = (4, 2, 1, 1)
    image_size: int = 64
    # What the training images show; prompts cannot choose (see docs/generation.md).
    domain: str = "day"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["vocabulary"] = list(self.vocabulary)
        data["multipliers"] = list(self.multipliers)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Text2ImageConfig":
        data = dict(data)
        data["vocabulary"] = tuple(data["vocabulary"])
        data["multipliers"] = tuple(data["multipliers"])
        return cls(**data)


def _init_dcgan(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) convolutions, N(1, 0.02) norm scales.

    The caption projections keep PyTorch's default (fan-in) initialisation: at
    N(0, 0.02) the compressed caption starts ~10x smaller than the noise and
    the generator learns to ignore it before it learns to read it."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """(noise [N, noise_dim], text [N, text_dim]) -> image [N, 3, 64, 64] in [-1, 1]."""

    def __init__(self, config: Text2ImageConfig) -> None:
        super().__init__()
        channels = [config.ngf * m for m in config.multipliers]
        self.compress = nn.Sequential(nn.Linear(config.text_dim, config.compressed_dim), nn.LeakyReLU(0.2))
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(config.noise_dim + config.compressed_dim, channels[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(channels[-1], 3, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        _init_dcgan(self)

    def forward(self, noise: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        latent = torch.cat([noise, self.compress(text)], dim=1)
        return self.net(latent[:, :, None, None])


class Discriminator(nn.Module):
    """(image [N, 3, 64, 64] in [-1, 1], text [N, text_dim]) -> logit [N]: real and matching?

    Besides the matching score it has auxiliary attribute heads (shape, colour,
    size) read from the same 4x4 features, trained on real images only: they
    give the generator a direct per-attribute signal, which a 12-minute CPU
    budget needs (see docs/generation.md for the ablation).
    """

    def __init__(self, config: Text2ImageConfig) -> None:
        super().__init__()
        channels = [config.ndf * m for m in reversed(config.multipliers)]
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
        self.image = nn.Sequential(*layers)
        self.compress = nn.Sequential(nn.Linear(config.text_dim, config.compressed_dim), nn.LeakyReLU(0.2))
        top = channels[-1]
        self.joint = nn.Sequential(
            nn.Conv2d(top + config.compressed_dim, top, 1, bias=False),
            nn.BatchNorm2d(top),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(top, 1, 4, 1, 0),
        )
        self.attribute_heads = nn.ModuleDict({
            name: nn.Linear(top * 4 * 4, count) for name, count in config.attribute_classes.items()
            if name != "position"
        })
        _init_dcgan(self)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        return self.image(image)

    def score(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        caption = self.compress(text)[:, :, None, None].expand(-1, -1, *features.shape[2:])
        return self.joint(torch.cat([features, caption], dim=1)).flatten()

    def attributes(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = features.flatten(1)
        return {name: head(flat) for name, head in self.attribute_heads.items()}

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(image), text)


class Text2Image(nn.Module):
    """What ships: the frozen text encoder plus the generator (the discriminator stays in training)."""

    def __init__(self, config: Text2ImageConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = Tokenizer(config.vocabulary)
        self.text_encoder = TextEncoder(len(self.tokenizer), config.word_dim, config.text_dim,
                                        config.attribute_classes)
        self.generator = Generator(config)

    def embed(self, texts: list[str]) -> torch.Tensor:
        ids, lengths = self.tokenizer.batch([self.tokenizer.encode(t)[0] for t in texts])
        device = next(self.parameters()).device
        return self.text_encoder(ids.to(device), lengths)

    def forward(self, noise: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], [N, 3, 64, 64]."""
        return (self.generator(noise, text_embedding) + 1.0) / 2.0

    @torch.inference_mode()
    def generate(self, texts: list[str], noise: torch.Tensor) -> torch.Tensor:
        """One image per (text, noise row), in [0, 1]; noise is moved to the model's device."""
        embedding = self.embed(texts)
        return self(noise.to(embedding.device), embedding)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def load_text2image(device: torch.device | str = "cpu", directory=None) -> Text2Image:
    """The shipped `text2image` model in eval mode on `device`, with `.name` and `.manifest_entry`.

    The config comes from the manifest; the state dict must then match the
    network exactly (strict loading), so a checkpoint from another architecture
    is refused rather than half-loaded. Raises models.training.CheckpointError.
    """
    from models.training import CheckpointError, load_checkpoint

    state, entry = load_checkpoint(CHECKPOINT_NAME, directory=directory)
    config = Text2ImageConfig.from_dict(entry["config"])
    model = Text2Image(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{CHECKPOINT_NAME} does not fit its own config: {exc}") from exc
    model.name = CHECKPOINT_NAME
    model.manifest_entry = entry
    return model.to(device).eval()
