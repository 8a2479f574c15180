"""The reference judge: a small CNN that reads a single-object ShapesWorld image (64x64) and predicts
its shape, colour, size and domain (four softmax heads on one shared trunk).

Trunk: three stages, each a stride-2 3x3 conv then a 3x3 conv (BatchNorm + ReLU after every conv),
then global average and max pooling concatenated, a hidden layer and one linear layer whose
outputs are split into the four heads. Inputs are float [N,3,64,64] in [0,1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from models.shapesworld import COLOUR_NAMES, DOMAINS, SHAPES, SIZES

HEADS: dict[str, tuple[str, ...]] = {"shape": SHAPES, "colour": COLOUR_NAMES, "size": SIZES, "domain": DOMAINS}


@dataclass(frozen=True)
class JudgeConfig:
    image_size: int = 64
    widths: tuple[int, ...] = (24, 48, 96)
    hidden: int = 128
    heads: tuple[tuple[str, int], ...] = tuple((k, len(v)) for k, v in HEADS.items())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "JudgeConfig":
        return cls(image_size=int(data["image_size"]), widths=tuple(data["widths"]), hidden=int(data["hidden"]),
                   heads=tuple((str(k), int(n)) for k, n in data["heads"]))


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class JudgeNet(nn.Module):
    """Image -> dict of logits, one entry per head (`shape`, `colour`, `size`, `domain`)."""

    def __init__(self, config: JudgeConfig = JudgeConfig()) -> None:
        super().__init__()
        self.config = config
        layers, cin = [], 3
        for width in config.widths:
            layers += [_conv(cin, width, 2), _conv(width, width, 1)]
            cin = width
        self.trunk = nn.Sequential(*layers)
        self.hidden = nn.Sequential(nn.Linear(2 * cin, config.hidden), nn.ReLU(inplace=True))
        self.out = nn.Linear(config.hidden, sum(n for _, n in config.heads))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.trunk(images - 0.5)
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        logits = self.out(self.hidden(pooled))
        return dict(zip([k for k, _ in self.config.heads], logits.split([n for _, n in self.config.heads], dim=1)))
