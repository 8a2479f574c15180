"""The reference pix2pix / CycleGAN generators, re-stated for the tests from the reference code's
description (junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py: define_G with
resnet_9blocks / resnet_6blocks / unet_256 / unet_128), independently of
models/generation/cyclegan_pix2pix.py, and saved the way the reference saves them
(`torch.save(net.state_dict(), "latest_net_G.pth")`).

Written in the reference's own shape: a `norm_layer` factory (functools.partial), `use_bias`
derived from it, the ResNet as one list of layers, the U-Net built inside out from
skip-connection blocks, dropout where the reference puts it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn


def get_norm_layer(norm: str):
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    return lambda channels: nn.Identity()


def uses_bias(norm_layer) -> bool:
    return isinstance(norm_layer, functools.partial) and norm_layer.func is nn.InstanceNorm2d


class RefResnetBlock(nn.Module):
    def __init__(self, dim, norm_layer, use_dropout, use_bias):
        super().__init__()
        block = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
                 norm_layer(dim), nn.ReLU(True)]
        if use_dropout:
            block += [nn.Dropout(0.5)]
        block += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias), norm_layer(dim)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x):
        return x + self.conv_block(x)


class RefResnetGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, norm_layer, use_dropout, n_blocks):
        super().__init__()
        use_bias = uses_bias(norm_layer)
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
                 norm_layer(ngf), nn.ReLU(True)]
        n_downsampling = 2
        for i in range(n_downsampling):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                      norm_layer(ngf * mult * 2), nn.ReLU(True)]
        mult = 2 ** n_downsampling
        for _ in range(n_blocks):
            model += [RefResnetBlock(ngf * mult, norm_layer, use_dropout, use_bias)]
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            model += [nn.ConvTranspose2d(ngf * mult, int(ngf * mult / 2), kernel_size=3, stride=2, padding=1,
                                         output_padding=1, bias=use_bias),
                      norm_layer(int(ngf * mult / 2)), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class RefUnetSkipConnectionBlock(nn.Module):
    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False,
                 norm_layer=nn.BatchNorm2d, use_dropout=False):
        super().__init__()
        self.outermost = outermost
        use_bias = uses_bias(norm_layer)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu, downnorm = nn.LeakyReLU(0.2, True), norm_layer(inner_nc)
        uprelu, upnorm = nn.ReLU(True), norm_layer(outer_nc)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            model = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            model = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
            if use_dropout:
                model += [nn.Dropout(0.5)]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class RefUnetGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, num_downs, ngf, norm_layer, use_dropout):
        super().__init__()
        block = RefUnetSkipConnectionBlock(ngf * 8, ngf * 8, norm_layer=norm_layer, innermost=True)
        for _ in range(num_downs - 5):
            block = RefUnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm_layer=norm_layer,
                                               use_dropout=use_dropout)
        block = RefUnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm_layer=norm_layer)
        block = RefUnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm_layer=norm_layer)
        block = RefUnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm_layer=norm_layer)
        self.model = RefUnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True,
                                                norm_layer=norm_layer)

    def forward(self, x):
        return self.model(x)


def define_g(net_g: str, ngf: int, norm: str = "batch", use_dropout: bool = False, input_nc: int = 3,
             output_nc: int = 3, seed: int = 0) -> nn.Module:
    """The reference's define_G for `net_g`, with random weights and (for BatchNorm) random running
    statistics, so that eval mode and each weight matter to the output."""
    torch.manual_seed(seed)
    norm_layer = get_norm_layer(norm)
    if net_g.startswith("resnet_"):
        blocks = int(net_g.removeprefix("resnet_").removesuffix("blocks"))
        net = RefResnetGenerator(input_nc, output_nc, ngf, norm_layer, use_dropout, blocks)
    else:
        net = RefUnetGenerator(input_nc, output_nc, {"unet_128": 7, "unet_256": 8}[net_g], ngf, norm_layer,
                               use_dropout)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
                module.running_mean.normal_(0.0, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(1234)
    return net.eval()


def save(net: nn.Module, path: Path) -> Path:
    """As the reference's BaseModel.save_networks: the CPU state_dict, torch.save."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.cpu().state_dict(), path)
    return path


def reference_output(net: nn.Module, pixels: np.ndarray) -> np.ndarray:
    """float [H, W, C] grey levels the reference computes in eval mode for uint8 [H, W, C] `pixels`
    (transform: ToTensor, Normalize(0.5, 0.5); tensor2im: (y + 1) / 2 * 255, before its uint8 cast)."""
    x = torch.from_numpy(np.asarray(pixels, np.float32) / 255.0).permute(2, 0, 1)[None]
    x = (x - 0.5) / 0.5
    with torch.no_grad():
        y = net.eval()(x)[0]
    return ((y.permute(1, 2, 0).numpy() + 1.0) / 2.0 * 255.0).astype(np.float64)


def reflect_padded_reference(net: nn.Module, pixels: np.ndarray, multiple: int, minimum: int = 0) -> np.ndarray:
    """What serving promises for any size: reflect-pad equally on both sides to `multiple` (and at least
    `minimum`), run, crop back."""
    h, w = pixels.shape[:2]
    dh, dw = max(-h % multiple, minimum - h), max(-w % multiple, minimum - w)
    padded = np.pad(pixels, ((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)), mode="reflect")
    return reference_output(net, padded)[dh // 2:dh // 2 + h, dw // 2:dw // 2 + w]


def write_entry(repository: Path, name: str, weights: Path, **options) -> Path:
    repository.mkdir(parents=True, exist_ok=True)
    lines = ["task: image-to-image", "family: cyclegan-pix2pix", f"path: {weights}"]
    if options:
        lines += ["options:"] + [f"  {key}: {value}" for key, value in options.items()]
    path = repository / f"{name}.model.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def random_picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus noise: something a convolution can tell apart from its mirror."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255.0 / max(width, 1), yy * 255.0 / max(height, 1),
                     (xx + yy) * 127.0 / max(width + height, 1)], axis=-1)
    return np.clip(base + rng.normal(0, 30, (height, width, 3)), 0, 255).astype(np.uint8)
