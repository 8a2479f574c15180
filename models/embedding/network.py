"""A small CLIP for ShapesWorld: an image CNN and a text GRU projected into one L2-normalised space.

    image [B,3,64,64] in [0,1] -> CNN (3 stages of stride-2 + plain 3x3 conv) -> 8x8 grid
        -> 1x1 conv to a few channels -> flatten -> MLP -> `dim`, L2-normalised
    words [B,T] -> embedding -> bidirectional GRU -> both final states -> MLP -> `dim`, L2-normalised

The image head flattens the grid instead of pooling it: captions say where things
are ("on the left", "A above B"), and a pooled vector would have to rediscover
position from padding effects. The grid is first squeezed to a few channels so
the flattened vector, and the linear layer after it, stay small.

Training objective (`contrastive_loss`): the symmetric InfoNCE of CLIP with a
learnable temperature, optionally plus the VSE++ hardest-negative hinge
(Faghri et al., 2018). ShapesWorld's captions are templated, so a batch often
holds two scenes that one caption describes equally well; those pairs are not
negatives and are masked out of both terms (`false_negatives`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from models.configs import ManifestConfig
from models.embedding.tokenizer import WordTokenizer

# Three stride-2 stages: 64 px -> an 8x8 grid.
ENCODER_STRIDE = 8


@dataclass(frozen=True)
class EmbeddingConfig(ManifestConfig):
    """Architecture; `vocabulary` is part of it, so a checkpoint's config alone rebuilds the model."""

    vocabulary: tuple[str, ...]
    dim: int = 128
    image_size: int = 64
    widths: tuple[int, ...] = (32, 64, 96)
    grid_channels: int = 16
    hidden: int = 256
    word_dim: int = 64
    text_hidden: int = 128
    max_words: int = 32
    init_temperature: float = 0.07
    # exp(logit_scale) is clamped to this, as in CLIP, so the logits cannot blow up.
    max_logit_scale: float = 100.0

    @property
    def grid_size(self) -> int:
        return self.image_size // ENCODER_STRIDE

    def tokenizer(self) -> WordTokenizer:
        return WordTokenizer(self.vocabulary, self.max_words)


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _head(cin: int, hidden: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))


class ImageEncoder(nn.Module):
    """Images [B,3,S,S] in [0,1] (S = config.image_size) -> unnormalised [B, dim]."""

    def __init__(self, config: EmbeddingConfig) -> None:
        super().__init__()
        if len(config.widths) != 3 or config.image_size % ENCODER_STRIDE:
            raise ValueError("the image encoder has 3 stride-2 stages and needs image_size divisible by 8")
        layers, cin = [], 3
        for width in config.widths:
            layers += [_conv(cin, width, 2), _conv(width, width, 1)]
            cin = width
        layers += [nn.Conv2d(cin, config.grid_channels, 1), nn.ReLU(inplace=True)]
        self.trunk = nn.Sequential(*layers)
        self.head = _head(config.grid_channels * config.grid_size**2, config.hidden, config.dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(images - 0.5).flatten(1))


class TextEncoder(nn.Module):
    """Word ids [B,T] (padded with 0) and lengths [B] -> unnormalised [B, dim]."""

    def __init__(self, config: EmbeddingConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(len(config.vocabulary), config.word_dim, padding_idx=0)
        self.gru = nn.GRU(config.word_dim, config.text_hidden, batch_first=True, bidirectional=True)
        self.head = _head(2 * config.text_hidden, config.hidden, config.dim)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, final = self.gru(packed)  # [2, B, H]: last forward state, last backward state
        return self.head(torch.cat([final[0], final[1]], dim=1))


class JointEmbedding(nn.Module):
    """Both encoders plus CLIP's learnable temperature (stored as log of the logit scale)."""

    def __init__(self, config: EmbeddingConfig) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = ImageEncoder(config)
        self.text_encoder = TextEncoder(config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))
        self.tokenizer = config.tokenizer()

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(images), dim=-1)

    def encode_ids(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_encoder(ids, lengths), dim=-1)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        device = self.logit_scale.device
        ids, lengths = self.tokenizer.batch(texts)
        return self.encode_ids(ids.to(device), lengths)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor,
                     false_negatives: torch.Tensor | None = None, vse_weight: float = 0.0,
                     margin: float = 0.2) -> tuple[torch.Tensor, dict[str, float]]:
    """Symmetric InfoNCE over the batch (+ `vse_weight` x VSE++ hardest-negative hinge).

    Pair i is (image_emb[i], text_emb[i]). `false_negatives[i, j]` (bool [B,B], i != j) marks a text j
    that describes image i just as well; such pairs are dropped from the negatives in both directions.
    """
    similarity = image_emb @ text_emb.t()  # [images, texts], cosine
    batch = similarity.shape[0]
    targets = torch.arange(batch, device=similarity.device)
    excluded = torch.zeros_like(similarity, dtype=torch.bool) if false_negatives is None else false_negatives
    excluded = excluded & ~torch.eye(batch, dtype=torch.bool, device=similarity.device)
    logits = (scale * similarity).masked_fill(excluded, float("-inf"))
    nce = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
    parts = {"nce": float(nce.detach())}
    loss = nce
    if vse_weight > 0:
        positive = similarity.diagonal()
        negatives = similarity.masked_fill(excluded | torch.eye(batch, dtype=torch.bool, device=similarity.device),
                                           float("-inf"))
        hardest_text = negatives.max(dim=1).values  # per image
        hardest_image = negatives.max(dim=0).values  # per text
        # A row whose every other entry is masked has no negative (-inf), so relu gives it no hinge.
        hinge = (F.relu(margin - positive + hardest_text) + F.relu(margin - positive + hardest_image)).mean()
        parts["vse"] = float(hinge.detach())
        loss = loss + vse_weight * hinge
    return loss, parts


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
