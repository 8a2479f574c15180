"""GAN building blocks shared by the image-to-image translators (pix2pix, CycleGAN).

- `norm_layer`: the normalisation every generator and discriminator uses. The
  default, InstanceNorm without running statistics, computes the same thing in
  training and in eval mode and never looks at other images of the batch, so
  a dynamically batched server returns exactly what evaluation measured.
- `PatchDiscriminator`: the PatchGAN of Isola et al. (2017), scaled to 64x64.
- `ResnetBlock`: the residual block of the CycleGAN generator.
- `ImagePool`: the history of generated images CycleGAN's discriminators see.
- `gan_loss`: LSGAN (least squares) or the original cross-entropy GAN loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("instance", "batch", "none")
GAN_LOSSES = ("lsgan", "vanilla")


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        # affine, but no running statistics: train and eval mode compute the same function.
        return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


def init_gan_weights(module: nn.Module, gain: float = 0.02) -> None:
    """The reference implementations' initialisation: N(0, 0.02) weights, N(1, 0.02) norm scales."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


class PatchDiscriminator(nn.Module):
    """image [N, C, H, W] in [-1, 1] -> a grid of real/fake logits, one per overlapping patch.

    `n_layers` stride-2 convolutions followed by two stride-1 ones, all 4x4. The
    original 70x70 PatchGAN uses three on 256x256 images; on 64x64 ShapesWorld
    scenes two give a 34x34 receptive field (a 14x14 grid of scores), enough to
    see a whole large object and its surroundings, the same share of the image
    as 70 px of 256 covers of the objects in the pix2pix data sets.
    """

    def __init__(self, in_channels: int, ndf: int = 32, n_layers: int = 2, norm: str = "instance") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        channels = ndf
        for i in range(1, n_layers + 1):
            out = ndf * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(channels, out, 4, stride, 1, bias=norm == "none"), norm_layer(norm, out),
                       nn.LeakyReLU(0.2, True)]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        init_gan_weights(self)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


class ResnetBlock(nn.Module):
    """x + conv-norm-relu-conv-norm(x), reflection padded (CycleGAN's generator trunk)."""

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=norm == "none"), norm_layer(norm, channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=norm == "none"), norm_layer(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ImagePool(nn.Module):
    """Shrivastava et al. (2017) as used by CycleGAN: the discriminator is shown generated images
    from a history of `size` earlier ones half of the time, so the generators cannot win by
    oscillating between modes the discriminator has just forgotten. The history is kept in
    buffers and drawn with torch's generator, so a training module that holds the pool saves and
    resumes it with its state_dict."""

    def __init__(self, size: int = 50, shape: tuple[int, ...] = (3, 64, 64)) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, *shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size <= 0:
            return images
        out = []
        for image in images.detach():
            filled = int(self.count)
            if filled < self.size:
                self.images[filled] = image
                self.count += 1
                out.append(image)
            elif float(torch.rand(())) < 0.5:
                index = int(torch.randint(self.size, ()))
                out.append(self.images[index].clone())
                self.images[index] = image
            else:
                out.append(image)
        return torch.stack(out)


def gan_loss(logits: torch.Tensor, real: bool, kind: str = "lsgan") -> torch.Tensor:
    """The discriminator's (or, with real=True on fakes, the generator's) loss on a grid of logits."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if kind == "lsgan":
        return F.mse_loss(logits, target)
    if kind == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    raise ValueError(f"GAN loss must be one of {GAN_LOSSES}, got {kind!r}")
