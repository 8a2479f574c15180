"""The reference pix2pix / CycleGAN generators, served from the reference code's own `.pth` files.

The family `cyclegan-pix2pix` reads the generator that junyanz/pytorch-CycleGAN-and-pix2pix
saves as `latest_net_G.pth` (pix2pix) or `latest_net_G_A.pth` / `latest_net_G_B.pth`
(CycleGAN): a plain state_dict written by `torch.save(net.state_dict(), path)`. An entry::

    # /srv/models/horse2zebra.model.yaml
    task: image-to-image
    family: cyclegan-pix2pix
    path: horse2zebra/latest_net_G_A.pth
    options:
      netG: resnet_9blocks        # optional: checked against what the file holds

The layout is read from the keys and shapes, never guessed from the file name:

* `resnet_<n>blocks` (`model.1.weight` is a 7x7 conv): ngf from that conv, n from the
  `model.<i>.conv_block.*` keys, dropout from the second conv's index in a block (5, or 6
  when a Dropout sits before the second pad);
* `unet_<2^d>` (`model.model.0.weight` is a 4x4 conv): ngf from that conv, d from the nesting
  depth of `model.model.1.model.3.model...`; dropout has no weights and is off in eval mode;
* the norm from the weights: BatchNorm (its weight, bias and running statistics), instance
  norm (no weights, and so biases on the convolutions), or none; the input and output
  channels (1 or 3) from the first and last convolutions.

Loading is strict (models/state_dicts.py): `torch.load(weights_only=True)`, a `module.` prefix
is stripped, and the running-statistics buffers older files carry for instance norms (which
have none since PyTorch 0.4; the reference's `__patch_instance_norm_state_dict` drops them too)
are the only keys dropped. Anything else missing, unexpected or mis-shaped stops start-up.

Serving (`translate_images`): RGB (or grey for a 1-channel net) scaled to [-1, 1] (mean 0.5,
std 0.5 per channel, as the reference's transform), reflect-padded equally on both sides to
the multiple the network's arithmetic needs (4 for ResNet: two stride-2 convs, and at least
8 px; 2^d for a U-Net, 256 for unet_256: every level halves and its skip must meet the
upsampled map), run,
cropped back, and mapped from [-1, 1] to uint8 by rounding (the reference's `tensor2im`
truncates). The network is in eval mode: BatchNorm uses its running statistics and dropout
is off, so an image's output never depends on its batch-mates. The reference `test.py` runs
in train mode unless `--eval` is given: its BatchNorm then normalises by the test batch's own
statistics (batch size 1: each image's) and its dropout stays on, so its pix2pix outputs
differ from ours and from run to run; with `--eval` they are what we compute. Instance norm
(CycleGAN's default) is the same in both modes. `options.batch_statistics: per-image` runs
a BatchNorm generator with each image's own statistics instead (test.py's default without its
dropout; the statistics include the padding), still independent of batch-mates.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from models.hf import LoadError
from models.repository import PYTORCH_CHECKPOINT, ModelDetails, ModelEntry
from models.state_dicts import load_exactly, read_pth, require, state_dict_at
from models.training import sha256_file

FAMILY = "cyclegan-pix2pix"
RESNET, UNET = "resnet", "unet"
BATCH, INSTANCE, NONE = "batch", "instance", "none"
# BatchNorm weights normalising by each image's own statistics (options.batch_statistics: per-image).
PER_IMAGE_BATCH = "batch-per-image"
BATCH_STATISTICS = ("running", "per-image")
# The reference builds its U-Net from an innermost block, d - 5 middle ngf*8 blocks and four outer ones.
MIN_UNET_DOWNS = 5
# Buffers an instance norm saved before PyTorch 0.4 carries; it has none now.
INSTANCE_NORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
OPTIONS = {"netG", "batch_statistics"}
# model.<layer>.conv_block.<item>.<weight|bias|...>: a residual block's tensors.
BLOCK_KEY = re.compile(r"model\.(\d+)\.conv_block\.(\d+)\.(\w+)$")


@dataclass(frozen=True)
class Layout:
    """What a generator file holds, read from its tensors."""

    kind: str  # RESNET or UNET
    ngf: int
    depth: int  # ResNet blocks, or U-Net downsamplings
    norm: str  # BATCH, INSTANCE or NONE (PER_IMAGE_BATCH: BATCH as the entry asks it to be run)
    dropout: bool  # ResNet blocks with a Dropout (it shifts the second conv's key); U-Net: unknown, False
    input_nc: int
    output_nc: int

    @property
    def net_g(self) -> str:
        """The reference's --netG name for this layout."""
        return f"resnet_{self.depth}blocks" if self.kind == RESNET else f"unet_{2 ** self.depth}"

    @property
    def multiple(self) -> int:
        """Input sides must be a multiple of this: two stride-2 convs (ResNet), or d halvings (U-Net)."""
        return 4 if self.kind == RESNET else 2 ** self.depth

    @property
    def minimum(self) -> int:
        """The smallest side run: a ResNet's instance norms after two halvings need more than one value (an
        8 px side leaves 2); a U-Net's innermost level is 1x1 at `multiple` and has no norm before it."""
        return 8 if self.kind == RESNET else self.multiple

    def describe(self) -> str:
        norm = {NONE: "no norm", PER_IMAGE_BATCH: "batch norm with per-image statistics"}.get(self.norm,
                                                                                          f"{self.norm} norm")
        extra = ", dropout" if self.dropout else ""
        return f"{self.net_g} (ngf {self.ngf}, {norm}{extra}, {self.input_nc}->{self.output_nc} channels)"


# --- the networks, key for key the reference's nn.Sequential layout ---------------------------------


class PerImageBatchNorm(nn.BatchNorm2d):
    """A BatchNorm's weights (and, unused, its saved running statistics) applied with each image's own
    mean and variance: what train-mode BatchNorm computes on a batch of one, as the reference's test.py
    does without --eval, but independent of batch-mates and without updating anything."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == BATCH:
        return nn.BatchNorm2d(channels)
    if norm == PER_IMAGE_BATCH:
        return PerImageBatchNorm(channels)
    if norm == INSTANCE:
        return nn.InstanceNorm2d(channels)  # affine=False, no running statistics (the reference's)
    return nn.Identity()


class ResnetBlock(nn.Module):
    """x + [pad, conv 3x3, norm, ReLU, (Dropout), pad, conv 3x3, norm](x)."""

    def __init__(self, dim: int, norm: str, dropout: bool, bias: bool) -> None:
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """7x7 conv, two stride-2 downs, n residual blocks, two transposed-conv ups, 7x7 conv, tanh."""

    def __init__(self, layout: Layout) -> None:
        super().__init__()
        ngf, norm = layout.ngf, layout.norm
        bias = norm == INSTANCE  # the reference: convs before a BatchNorm (or no norm) have no bias
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(layout.input_nc, ngf, 7, bias=bias),
                                   norm_layer(norm, ngf), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                       norm_layer(norm, ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, norm, layout.dropout, bias) for _ in range(layout.depth)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=bias),
                       norm_layer(norm, ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, layout.output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetBlock(nn.Module):
    """One U-Net level: down, the inner levels, up; every level but the outermost concatenates its input
    (the skip). Outermost: [conv, inner, ReLU, convT, tanh]; middle: [LeakyReLU, conv, norm, inner, ReLU,
    convT, norm]; innermost: [LeakyReLU, conv, ReLU, convT, norm]. Dropout (the reference's middle ngf*8
    levels) has no weights and does nothing in eval mode, so it is left out."""

    def __init__(self, outer_nc: int, inner_nc: int, norm: str, inner: nn.Module | None = None,
                 input_nc: int | None = None, outermost: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        bias = norm == INSTANCE
        down = nn.Conv2d(input_nc or outer_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        if outermost:
            layers = [down, inner, nn.ReLU(True), nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1), nn.Tanh()]
        elif inner is None:
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                      nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1, bias=bias), norm_layer(norm, outer_nc)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down, norm_layer(norm, inner_nc), inner, nn.ReLU(True),
                      nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1, bias=bias), norm_layer(norm, outer_nc)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    def __init__(self, layout: Layout) -> None:
        super().__init__()
        ngf, norm = layout.ngf, layout.norm
        block = UnetBlock(ngf * 8, ngf * 8, norm)
        for _ in range(layout.depth - MIN_UNET_DOWNS):
            block = UnetBlock(ngf * 8, ngf * 8, norm, block)
        for outer, inner in ((4, 8), (2, 4), (1, 2)):
            block = UnetBlock(ngf * outer, ngf * inner, norm, block)
        self.model = UnetBlock(layout.output_nc, ngf, norm, block, input_nc=layout.input_nc, outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build(layout: Layout) -> nn.Module:
    return (ResnetGenerator if layout.kind == RESNET else UnetGenerator)(layout)


# --- reading the layout from the tensors -------------------------------------------------------------


def _norm(state: dict, norm_key: str, conv_key: str) -> str:
    """BatchNorm has a weight at its position; else a biased conv means instance norm; else none."""
    if f"{norm_key}.weight" in state:
        return BATCH
    return INSTANCE if f"{conv_key}.bias" in state else NONE


def read_layout(name: str, path: Path, state: dict) -> Layout:
    """The layout `state` holds, or a LoadError naming what it does not look like."""
    if "model.1.weight" in state:
        first = require(name, path, state, "model.1.weight", 4)
        found = [(int(m[1]), int(m[2]), m[3], state[k].ndim) for k in state if (m := BLOCK_KEY.match(k))]
        blocks = sorted({block for block, *_ in found})
        if not blocks:
            raise LoadError(f"model {name!r}: {path} has a 7x7 first conv (model.1) but no residual blocks "
                            "(model.<i>.conv_block.*): not a reference ResNet generator")
        convs = {i for block, i, what, ndim in found if block == blocks[0] and what == "weight" and ndim == 4}
        last = 10 + len(blocks) + 7  # the final 7x7 conv after the blocks, two ups and a pad
        output = require(name, path, state, f"model.{last}.weight", 4)
        dropout = max(convs, default=5) == 6  # the second conv moved from conv_block.5 to .6
        return Layout(RESNET, first.shape[0], len(blocks), _norm(state, "model.2", "model.1"), dropout,
                      first.shape[1], output.shape[0])
    if "model.model.0.weight" in state:
        first = require(name, path, state, "model.model.0.weight", 4)
        # The outermost level's inner levels are item 1 of its Sequential, every middle level's item 3.
        prefix, depth = "model.model.1.model.", 2
        while any(k.startswith(f"{prefix}3.model.") for k in state):
            prefix += "3.model."
            depth += 1
        if depth < MIN_UNET_DOWNS:
            raise LoadError(f"model {name!r}: {path} is a U-Net of {depth} levels; the reference's have at least "
                            f"{MIN_UNET_DOWNS} (unet_128: 7, unet_256: 8)")
        output = require(name, path, state, "model.model.3.weight", 4)  # ConvTranspose: [in, out, k, k]
        return Layout(UNET, first.shape[0], depth, _norm(state, "model.model.1.model.2", "model.model.0"), False,
                      first.shape[1], output.shape[1])
    shown = ", ".join(sorted(state)[:5])
    raise LoadError(f"model {name!r}: {path} is neither a reference ResNet generator (model.1.weight, "
                    f"model.<i>.conv_block.*) nor a U-Net (model.model.0.weight, model.model.1.model...); "
                    f"its keys start {shown}")


# --- serving ------------------------------------------------------------------------------------------


class ReferenceTranslator:
    """A loaded reference generator: `translate_images` at each input's size, `details`, `layout`."""

    def __init__(self, network: nn.Module, layout: Layout, details: ModelDetails, device) -> None:
        self.layout = layout
        self.details = details
        self.device = torch.device(device)
        self.network = network.to(self.device).eval().requires_grad_(False)

    def input_warnings(self, image: Image.Image) -> list[str]:
        return []  # trained on the user's own pictures: no narrower world to flag

    def work_size(self, width: int, height: int) -> tuple[int, int]:
        """The padded size an image of `width` x `height` is run at (the next multiple, at least `minimum`)."""
        m, least = self.layout.multiple, self.layout.minimum
        return max(-(-width // m) * m, least), max(-(-height // m) * m, least)

    def translate_images(self, images: list[Image.Image]) -> list[np.ndarray]:
        """PIL images of any sizes -> uint8 [H, W, 3] each at its input's size. Images of one padded size
        run as one batch; in eval mode no image's output depends on the others."""
        out: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(self.work_size(*image.size), []).append(i)
        self.network.eval()
        for (width, height), members in groups.items():
            batch = torch.stack([self._padded(images[i], width, height) for i in members]).to(self.device)
            with torch.no_grad():
                y = self.network(batch)
            pixels = ((y + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            for i, p in zip(members, pixels):
                w, h = images[i].size
                top, left = (height - h) // 2, (width - w) // 2
                p = p[top:top + h, left:left + w]
                out[i] = np.ascontiguousarray(np.repeat(p, 3, axis=2) if p.shape[2] == 1 else p)
        return out  # type: ignore[return-value]

    def _padded(self, image: Image.Image, width: int, height: int) -> torch.Tensor:
        """[C, height, width] in [-1, 1]: the image reflect-padded equally on each side (numpy's reflect
        repeats the reflection when the pad is wider than the image)."""
        pixels = np.asarray(image.convert("L" if self.layout.input_nc == 1 else "RGB"), np.float32)
        pixels = pixels.reshape(image.height, image.width, -1)
        dy, dx = height - image.height, width - image.width
        pixels = np.pad(pixels, ((dy // 2, dy - dy // 2), (dx // 2, dx - dx // 2), (0, 0)), mode="reflect")
        return torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1.0


def load(entry: ModelEntry, device) -> ReferenceTranslator:
    """An entry of family `cyclegan-pix2pix`: the generator file at `entry.path`, strictly."""
    path = Path(entry.path)
    unknown = set(entry.options) - OPTIONS - {"chunk"}  # chunk: the generation service's default option
    if unknown:
        raise LoadError(f"{entry.origin}: model {entry.name!r}: unknown options {', '.join(sorted(unknown))} "
                        f"(family {FAMILY} reads: {', '.join(sorted(OPTIONS))})")
    state = state_dict_at(entry.name, path, read_pth(entry.name, path))
    layout = read_layout(entry.name, path, state)
    statistics = entry.option("batch_statistics", "running")
    if statistics not in BATCH_STATISTICS:
        raise LoadError(f"{entry.origin}: model {entry.name!r}: options.batch_statistics is {statistics!r}; "
                        f"one of {', '.join(BATCH_STATISTICS)}")
    if statistics == "per-image":
        if layout.norm != BATCH:
            raise LoadError(f"{entry.origin}: model {entry.name!r}: options.batch_statistics applies to BatchNorm "
                            f"generators; {path} holds a {layout.describe()}")
        layout = replace(layout, norm=PER_IMAGE_BATCH)
    wanted = entry.option("netG")
    if wanted and str(wanted) != layout.net_g:
        raise LoadError(f"model {entry.name!r}: options.netG is {wanted!r} but {path} holds a {layout.describe()}")
    for side, channels in (("input", layout.input_nc), ("output", layout.output_nc)):
        if channels not in (1, 3):
            raise LoadError(f"model {entry.name!r}: {path} has {channels} {side} channels; images are served "
                            "with 1 (grey) or 3 (RGB)")
    # Built without memory first: a few tensors claiming a huge ngf must not make us allocate the network
    # they describe. Only when the file holds at least as many numbers as the network is it allocated
    # (uninitialised: every parameter and buffer is then copied from the file).
    with torch.device("meta"):
        network = build(layout)
    instance_norms = {n for n, m in network.named_modules() if isinstance(m, nn.InstanceNorm2d)}
    stale = [k for k in state
             if k.rsplit(".", 1)[0] in instance_norms and k.rsplit(".", 1)[-1] in INSTANCE_NORM_BUFFERS]
    if sum(v.numel() for v in network.state_dict().values()) > sum(v.numel() for v in state.values()):
        with warnings.catch_warnings():  # copying into meta tensors is a no-op, and never reached: it fails
            warnings.simplefilter("ignore")
            load_exactly(entry.name, path, network, state, ignored=stale)
        raise LoadError(f"model {entry.name!r}: {path} holds fewer numbers than a {layout.describe()}")
    network = network.to_empty(device="cpu")
    load_exactly(entry.name, path, network, state, ignored=stale)
    sha = sha256_file(path)
    details = ModelDetails(FAMILY, str(path), sha, parameter_count=sum(p.numel() for p in network.parameters()),
                           fingerprint=sha, architecture=layout.describe(), backend=PYTORCH_CHECKPOINT)
    return ReferenceTranslator(network, layout, details, device)
