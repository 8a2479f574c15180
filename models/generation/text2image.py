"""GAN-INT-CLS text-to-image (Reed et al., 2016) at 64x64, sized for ShapesWorld.

The caption embedding (text_encoder.py) is compressed by a small dense layer,
concatenated with Gaussian noise and decoded by a DCGAN-style generator. The
matching-aware discriminator reduces the image to 4x4 features, appends the
compressed caption at every position, and scores (image, caption) pairs: it
is trained to accept real/matching pairs and to refuse real/mismatching and
fake/matching ones, so the generator is pushed to get every word right, not
only to look real.

Three additions make it converge within a 12-minute single-core budget (the
ablations are in docs/generation.md): the generator is layered (it draws the
object on its own layer and places it, see Generator), the discriminator has
auxiliary attribute heads (see Discriminator), and training adds a
reconstruction path through a latent encoder (see LatentEncoder). At
inference the model is exactly GAN-INT-CLS's: caption + N(0, I) noise -> G.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.configs import ManifestConfig
from models.generation.sampling import PromptEmbeddings, generate_in_chunks
from models.generation.text_encoder import TextEncoder, Tokenizer

CHECKPOINT_NAME = "text2image"


@dataclass(frozen=True)
class Text2ImageConfig(ManifestConfig):
    vocabulary: tuple[str, ...]
    # Classes of the text encoder's pretraining heads (name -> count).
    attribute_classes: dict[str, int] = field(default_factory=dict)
    word_dim: int = 32
    text_dim: int = 64
    compressed_dim: int = 32
    noise_dim: int = 64
    ngf: int = 32
    ndf: int = 32
    # Generator channel multipliers of the object layer from 4x4 up; one more
    # step outputs its RGBA at 32x32.
    multipliers: tuple[int, ...] = (4, 2, 1)
    # Discriminator channel multipliers from 32x32 down to 4x4.
    d_multipliers: tuple[int, ...] = (1, 1, 2, 4)
    # Furthest the object's centre may move from the canvas centre, as a fraction of half the canvas.
    max_shift: float = 0.8
    # Side of the object layer in pixels (objects are at most 28 px).
    glyph_size: int = 32
    image_size: int = 64
    # What the training images show; prompts cannot choose (see docs/generation.md).
    domain: str = "day"


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
    """(noise [N, noise_dim], text [N, text_dim]) -> image [N, 3, 64, 64] in [-1, 1].

    A layered generator (LR-GAN, Yang et al. 2017): a DCGAN stack draws the
    object centred on a `glyph_size` RGBA layer, a small dense head picks where
    it goes and the background colour, and a spatial transformer pastes the
    layer onto the canvas. A plain DCGAN has to learn to draw every shape at
    every position from a vector, which is notoriously slow for transposed
    convolutions (Liu et al. 2018, CoordConv); here position and shape are
    separate outputs and the shape is always drawn in the same place.
    """

    def __init__(self, config: Text2ImageConfig) -> None:
        super().__init__()
        self.config = config
        latent = config.noise_dim + config.compressed_dim
        channels = [config.ngf * m for m in config.multipliers]
        if 4 * 2 ** len(channels) != config.glyph_size:
            raise ValueError(f"{len(channels)} generator stages draw a {4 * 2 ** len(channels)} px layer, "
                             f"not glyph_size={config.glyph_size}")
        self.compress = nn.Sequential(nn.Linear(config.text_dim, config.compressed_dim), nn.LeakyReLU(0.2))
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent, channels[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        # RGB plus the alpha (coverage) logit.
        layers += [nn.ConvTranspose2d(channels[-1], 4, 4, 2, 1)]
        self.glyph = nn.Sequential(*layers)
        # (x, y) offset of the layer's centre and the background RGB.
        self.layout = nn.Sequential(nn.Linear(latent, 64), nn.ReLU(True), nn.Linear(64, 5))
        _init_dcgan(self.glyph)
        # Start transparent, so the first images are backgrounds rather than grey squares.
        nn.init.constant_(self.glyph[-1].bias[3], -4.0)
        # Coverage fades to zero over the layer's outer 2 px, so its edge never shows.
        ramp = torch.clamp(torch.minimum(torch.arange(config.glyph_size) + 0.5,
                                         config.glyph_size - 0.5 - torch.arange(config.glyph_size)) / 2.0, max=1.0)
        self.register_buffer("window", (ramp[:, None] * ramp[None, :])[None, None], persistent=False)

    def forward(self, noise: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        latent = torch.cat([noise, self.compress(text)], dim=1)
        glyph = self.glyph(latent[:, :, None, None])
        glyph = torch.cat([glyph[:, :3], glyph[:, 3:] - 20.0 * (1.0 - self.window)], dim=1)
        layout = self.layout(latent)
        shift = torch.tanh(layout[:, :2]) * self.config.max_shift
        background = torch.tanh(layout[:, 2:])
        n, size = len(latent), self.config.image_size
        # Canvas coordinates -> layer coordinates: one canvas pixel is one layer pixel.
        scale = size / glyph.shape[-1]
        theta = torch.zeros(n, 2, 3, device=latent.device, dtype=latent.dtype)
        theta[:, 0, 0] = scale
        theta[:, 1, 1] = scale
        theta[:, :, 2] = -scale * shift
        grid = F.affine_grid(theta, [n, 4, size, size], align_corners=False)
        placed = F.grid_sample(glyph, grid, mode="bilinear", padding_mode="border", align_corners=False)
        inside = ((grid.abs() <= 1.0).all(dim=-1, keepdim=True)).permute(0, 3, 1, 2).to(latent.dtype)
        alpha = torch.sigmoid(placed[:, 3:]) * inside
        return alpha * torch.tanh(placed[:, :3]) + (1.0 - alpha) * background[:, :, None, None]


class Discriminator(nn.Module):
    """(image [N, 3, 64, 64] in [-1, 1], text [N, text_dim]) -> logit [N]: real and matching?

    Besides the matching score it has auxiliary attribute heads (shape, colour,
    size) read from the same 4x4 features, trained on real images only: they
    give the generator a direct per-attribute signal (AC-GAN, Odena et al.
    2017) instead of leaving it to discover shapes through the matching score.
    """

    def __init__(self, config: Text2ImageConfig) -> None:
        super().__init__()
        channels = [config.ndf * m for m in config.d_multipliers]
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
        # Max- and mean-pooled: an attribute is the same wherever the object is.
        self.attribute_heads = nn.ModuleDict({
            name: nn.Linear(2 * top, count) for name, count in config.attribute_classes.items()
            if name != "position"
        })
        _init_dcgan(self)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        return self.image(image)

    def score(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        caption = self.compress(text)[:, :, None, None].expand(-1, -1, *features.shape[2:])
        return self.joint(torch.cat([features, caption], dim=1)).flatten()

    def attributes(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = torch.cat([features.amax(dim=(2, 3)), features.mean(dim=(2, 3))], dim=1)
        return {name: head(flat) for name, head in self.attribute_heads.items()}

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(image), text)


class LatentEncoder(nn.Module):
    """Training only: image -> (mean, log-variance) of the generator noise that redraws it.

    With it the generator also learns by reconstruction (cVAE-GAN, Larsen et al.
    2016; BicycleGAN, Zhu et al. 2017): G(E(x), caption) must give back x, a
    direct per-pixel signal that converges far faster than the adversarial one
    alone. The KL term keeps E's codes close to N(0, I), which is what the
    generator is fed at inference, and leaves to the noise only what the
    caption does not say (position, background, jitter).
    """

    def __init__(self, config: Text2ImageConfig) -> None:
        super().__init__()
        widths = [16, 32, 64, 64]
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in widths:
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2, True)]
            c_in = c_out
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.mean = nn.Linear(widths[-1] * 4 * 4, config.noise_dim)
        self.log_variance = nn.Linear(widths[-1] * 4 * 4, config.noise_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.net(image)
        return self.mean(features), self.log_variance(features).clamp(-10.0, 10.0)


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


def load_text2image(device: torch.device | str = "cpu", directory=None, name: str = CHECKPOINT_NAME) -> Text2Image:
    """The shipped `text2image` model in eval mode on `device`, with `.name` and `.manifest_entry`.

    The network is rebuilt from the manifest's config and loaded strictly, so a
    checkpoint that does not fit it is refused (models.training.CheckpointError).
    """
    from models.training import load_model

    model, entry = load_model(name, lambda config: Text2Image(Text2ImageConfig.from_dict(config)),
                              directory=directory, device=device)
    model.name = name
    model.manifest_entry = entry
    return model


# Generator calls always see this many rows (zero-padded): convolution kernels are picked per
# batch shape and round differently (~1e-6), so a fixed shape is what keeps a sample's bytes
# independent of the requests that share its batch.
DEFAULT_CHUNK = 8


class BuiltinText2Image:
    """The shipped GAN-INT-CLS behind the TextToImageGenerator interface (models/generation/interface.py)."""

    def __init__(self, entry, device, chunk: int = DEFAULT_CHUNK) -> None:
        from models.repository import BUILTIN, ModelDetails

        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.model = load_text2image(device, entry.path.parent, entry.path.stem)
        self.device = torch.device(device)
        self.chunk = chunk
        self.noise_dim = self.model.config.noise_dim
        self.vocabulary = list(self.model.tokenizer.words[2:])
        entry_info = self.model.manifest_entry
        self.details = ModelDetails(BUILTIN, str(entry.path), entry_info.get("sha256", ""),
                                    dict(entry_info.get("metrics", {})),
                                    entry_info.get("parameter_count") or parameter_count(self.model),
                                    fingerprint=entry_info.get("sha256", ""), architecture="gan-int-cls")
        # One prompt at a time (a GRU's output must not depend on its batch-mates), cached:
        # the vocabulary is closed, so real traffic repeats a small set of prompts.
        self._embedding = PromptEmbeddings(self._embed)

    def encode_prompt(self, prompt: str) -> tuple[tuple, list[str]]:
        ids, unknown = self.model.tokenizer.encode(prompt)
        return tuple(ids), list(unknown)

    def _embed(self, word_ids: tuple[int, ...]) -> torch.Tensor:
        ids, lengths = self.model.tokenizer.batch([list(word_ids)])
        return self.model.text_encoder(ids.to(self.device), lengths)

    def generate(self, tokens: list[tuple], noise: list[torch.Tensor]) -> list:
        images = generate_in_chunks(self.model, [self._embedding(t) for t in tokens], noise, self.chunk, self.device)
        return [(i.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy() for i in images]


def load(entry, device) -> BuiltinText2Image:
    return BuiltinText2Image(entry, device, int(entry.option("chunk", DEFAULT_CHUNK)))
