"""pix2pix (Isola et al., 2017) for ShapesWorld sketch -> day photo at 64x64.

The generator is a U-Net: 4x4 stride-2 convolutions halve the image `depth`
times (64 -> 2 with depth 5), transposed convolutions double it back, and each
decoder level also receives the encoder features of its own resolution (the
skips), so the outlines' exact positions and colours reach the output without
passing through the bottleneck. The discriminator is a conditional PatchGAN
(layers.PatchDiscriminator) that sees the sketch and a photo side by side.
Training (train_pix2pix.py): L1 to the target (lambda 100) + GAN loss.

Test-time behaviour equals training-time behaviour: InstanceNorm without
running statistics and no dropout unless `dropout` > 0, which is then applied
only in training mode (eval mode, what is served and evaluated, never drops).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.configs import ManifestConfig
from models.generation.layers import PatchDiscriminator, init_gan_weights, norm_layer

CHECKPOINT_NAME = "sketch2photo"
KIND = "pix2pix"


@dataclass(frozen=True)
class Pix2PixConfig(ManifestConfig):
    ngf: int = 16
    # Encoder levels; the bottleneck is image_size / 2**depth pixels wide.
    depth: int = 5
    # Channel multiplier of each encoder level (of ngf), capped by the last entry.
    max_multiplier: int = 8
    norm: str = "instance"
    # An extra level at full resolution (3x3 convolutions, no resampling): 1-2 px outlines reach
    # the output layer unblurred. Off: the original pix2pix U-Net, whose outermost level is 1/2.
    full_resolution: bool = True
    # Dropout in the innermost decoder levels during training only (pix2pix's noise; 0 = off).
    dropout: float = 0.0
    dropout_levels: int = 3
    ndf: int = 32
    d_layers: int = 2
    image_size: int = 64
    kind: str = KIND

    def channels(self) -> list[int]:
        return [self.ngf * min(2 ** i, self.max_multiplier) for i in range(self.depth)]


class UNetGenerator(nn.Module):
    """sketch [N, 3, S, S] in [-1, 1] -> photo [N, 3, S, S] in [-1, 1]; S a multiple of 2**depth."""

    def __init__(self, config: Pix2PixConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.channels()
        bias = config.norm == "none"
        # With a full-resolution level the outermost 4x4 stride-2 level becomes an ordinary one.
        stem = config.ngf if config.full_resolution else 0
        self.down = nn.ModuleList()
        if stem:
            self.down.append(nn.Conv2d(3, stem, 3, 1, 1))
        for level, c_out in enumerate(channels):
            if level == 0 and not stem:  # no norm on the outermost level, as in pix2pix
                self.down.append(nn.Conv2d(3, c_out, 4, 2, 1))
                continue
            innermost = level == len(channels) - 1
            c_in = channels[level - 1] if level else stem
            # The innermost level is 2x2 or smaller: a norm there would mostly erase it.
            self.down.append(nn.Sequential(
                nn.LeakyReLU(0.2, True), nn.Conv2d(c_in, c_out, 4, 2, 1, bias=bias or innermost),
                nn.Identity() if innermost else norm_layer(config.norm, c_out),
            ))
        self.up = nn.ModuleList()
        for level in reversed(range(len(channels))):
            innermost = level == len(channels) - 1
            c_in = channels[level] * (1 if innermost else 2)  # the skip doubles the input
            if level == 0 and not stem:
                self.up.append(nn.Sequential(nn.ReLU(True), nn.ConvTranspose2d(c_in, 3, 4, 2, 1), nn.Tanh()))
                continue
            c_out = channels[level - 1] if level else stem
            drop = config.dropout > 0 and len(channels) - 1 - level < config.dropout_levels
            self.up.append(nn.Sequential(
                nn.ReLU(True), nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias), norm_layer(config.norm, c_out),
                *([nn.Dropout(config.dropout)] if drop else []),
            ))
        if stem:
            self.up.append(nn.Sequential(nn.ReLU(True), nn.Conv2d(2 * stem, 3, 3, 1, 1), nn.Tanh()))
        init_gan_weights(self)

    def forward(self, sketch: torch.Tensor) -> torch.Tensor:
        skips = []
        x = sketch
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        skips.pop()  # the bottleneck is the decoder's input, not a skip
        for layer in self.up:
            x = layer(x)
            if skips:
                x = torch.cat([x, skips.pop()], dim=1)
        return x


def build_discriminator(config: Pix2PixConfig) -> PatchDiscriminator:
    """Conditional PatchGAN: (sketch, photo) concatenated, 6 channels."""
    return PatchDiscriminator(6, config.ndf, config.d_layers, config.norm)


def build_generator(config: dict) -> UNetGenerator:
    return UNetGenerator(Pix2PixConfig.from_dict(config))
