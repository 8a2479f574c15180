"""Show, Attend and Tell (Xu et al., 2015) sized for 64x64 ShapesWorld scenes.

    encoder:  image [B,3,64,64] -> feature grid [B, L = 8*8, D]
    decoder:  LSTM whose input at step t is [E y_{t-1}; beta_t * z_t], where z_t is the
              soft (Bahdanau) attention context over the grid computed from h_{t-1}, and
              beta_t = sigmoid(f_beta(h_{t-1})) is the gating scalar; the deep output layer
              p(y_t) ~ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t)) lets the attended features
              speak for the word directly, which is what makes the maps point at objects.

Two fixed coordinate channels are appended to the CNN's grid before the last
1x1 projection: an attention context is a weighted sum, so without them it would
not say *where* the attended object is, and the position and relation words
("on the left", "above") would have nothing to go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.captioning.vocabulary import Vocabulary
from models.configs import ManifestConfig

# Each of the encoder's three stride-2 stages halves the side: 64 -> 8.
ENCODER_STRIDE = 8


@dataclass(frozen=True)
class CaptionerConfig(ManifestConfig):
    """Architecture. `vocabulary` is part of it, so a checkpoint's config alone rebuilds the model."""

    vocabulary: tuple[str, ...]
    image_size: int = 64
    channels: tuple[int, int, int] = (32, 64, 128)
    feature_dim: int = 128
    # Kernel of the last conv, at grid resolution. 1 keeps each cell's receptive field close to the
    # cell itself, so that attending to a cell means looking at what lies there.
    grid_kernel: int = 3
    embed_dim: int = 64
    hidden_dim: int = 192
    attention_dim: int = 128
    dropout: float = 0.2
    # "mean": h0, c0 from the mean feature as in the paper; "learned": fixed learned vectors, so that the
    # image reaches the decoder only through attention (the mean already names every object, and a
    # decoder fed it never needs to look anywhere in particular).
    initial_state: str = "learned"
    max_length: int = 20  # default caption length limit in words, without <end>

    @property
    def grid_size(self) -> int:
        return self.image_size // ENCODER_STRIDE


def _conv(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Encoder(nn.Module):
    """Image in [0,1] -> feature grid [B, H/8 * W/8, feature_dim], row-major over the grid."""

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        c1, c2, c3 = config.channels
        self.body = nn.Sequential(
            _conv(3, c1, 2), _conv(c1, c1),
            _conv(c1, c2, 2), _conv(c2, c2),
            _conv(c2, c3, 2), _conv(c3, c3, kernel=config.grid_kernel),
        )
        self.project = nn.Conv2d(c3 + 2, config.feature_dim, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        grid = self.body(images * 2.0 - 1.0)
        b, _, h, w = grid.shape
        ys = torch.linspace(-1.0, 1.0, h, device=grid.device, dtype=grid.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=grid.device, dtype=grid.dtype)
        coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), 0).expand(b, 2, h, w)
        features = F.relu(self.project(torch.cat([grid, coords], 1)))
        return features.flatten(2).transpose(1, 2)


class SoftAttention(nn.Module):
    """Additive attention: alpha = softmax_i(w . tanh(W_f f_i + W_h h))."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.from_features = nn.Linear(feature_dim, attention_dim)
        self.from_hidden = nn.Linear(hidden_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The features' half of the score; computed once per image, reused every step."""
        return self.from_features(features)

    def forward(self, features: torch.Tensor, projected: torch.Tensor,
                hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(torch.tanh(projected + self.from_hidden(hidden)[:, None, :])).squeeze(-1)
        # The weights in float32 whatever the autocast dtype: they are also the attention maps a caller
        # gets, which must sum to 1 (in bf16 they were off by up to 1e-3); a no-op in float32.
        alpha = scores.float().softmax(-1)
        context = torch.bmm(alpha[:, None, :].to(features.dtype), features).squeeze(1)
        return context, alpha


@dataclass
class DecoderState:
    """What one decoding step carries to the next; rows are captions (images x beams)."""

    features: torch.Tensor  # [N, L, D]
    projected: torch.Tensor  # [N, L, A]
    h: torch.Tensor
    c: torch.Tensor

    def select(self, rows: torch.Tensor) -> "DecoderState":
        return DecoderState(*(t.index_select(0, rows) for t in (self.features, self.projected, self.h, self.c)))


@dataclass
class StepOutput:
    log_probs: torch.Tensor  # [N, V]
    alpha: torch.Tensor  # [N, L]
    state: DecoderState = field(repr=False)


class Captioner(nn.Module):
    """Encoder + attention LSTM decoder; see the module docstring."""

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        self.config = config
        self.vocab = Vocabulary(config.vocabulary)
        v, e, d, hd = len(self.vocab), config.embed_dim, config.feature_dim, config.hidden_dim
        self.encoder = Encoder(config)
        self.attention = SoftAttention(d, hd, config.attention_dim)
        self.embed = nn.Embedding(v, e, padding_idx=self.vocab.pad)
        if config.initial_state == "mean":
            self.init_h = nn.Linear(d, hd)
            self.init_c = nn.Linear(d, hd)
        elif config.initial_state == "learned":
            self.h0 = nn.Parameter(torch.zeros(hd))
            self.c0 = nn.Parameter(torch.zeros(hd))
        else:
            raise ValueError(f"initial_state must be 'mean' or 'learned', got {config.initial_state!r}")
        self.gate = nn.Linear(hd, d)
        self.lstm = nn.LSTMCell(e + d, hd)
        self.out_hidden = nn.Linear(hd, e)
        self.out_context = nn.Linear(d, e)
        self.out_words = nn.Linear(e, v)
        self.dropout = nn.Dropout(config.dropout)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return self.config.grid_size, self.config.grid_size

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def start(self, features: torch.Tensor) -> DecoderState:
        if self.config.initial_state == "mean":
            mean = features.mean(1)
            h, c = torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))
        else:
            n = features.shape[0]
            h, c = self.h0.expand(n, -1).contiguous(), self.c0.expand(n, -1).contiguous()
        return DecoderState(features, self.attention.project(features), h, c)

    def _step(self, state: DecoderState, previous: torch.Tensor):
        embedded = self.embed(previous)
        context, alpha = self.attention(state.features, state.projected, state.h)
        gated = torch.sigmoid(self.gate(state.h)) * context
        h, c = self.lstm(torch.cat([embedded, gated], 1), (state.h, state.c))
        logits = self.out_words(self.dropout(embedded + self.out_hidden(h) + self.out_context(context)))
        return logits, alpha, DecoderState(state.features, state.projected, h, c)

    def step(self, state: DecoderState, previous: torch.Tensor) -> StepOutput:
        """One decoding step from the previous word ids [N]: log-probabilities of the next word."""
        logits, alpha, state = self._step(state, previous)
        return StepOutput(logits.log_softmax(-1), alpha, state)

    def forward(self, images: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing. captions [B, T] = <start> w1 .. <end> <pad>..; returns logits for
        positions 1..T-1 [B, T-1, V] and the attention behind each [B, T-1, L]."""
        state = self.start(self.encode(images))
        logits, alphas = [], []
        for t in range(captions.shape[1] - 1):
            step_logits, alpha, state = self._step(state, captions[:, t])
            logits.append(step_logits)
            alphas.append(alpha)
        return torch.stack(logits, 1), torch.stack(alphas, 1)


def caption_loss(logits: torch.Tensor, alphas: torch.Tensor, captions: torch.Tensor, pad: int,
                 attention_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on the words plus the doubly stochastic attention penalty
    lambda * sum_i (1 - sum_t alpha_ti)^2, averaged over the batch (padded steps excluded)."""
    targets = captions[:, 1:]
    mask = (targets != pad).float()
    nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=pad)
    coverage = (alphas * mask[..., None]).sum(1)
    penalty = ((1.0 - coverage) ** 2).sum(1).mean()
    loss = nll + attention_weight * penalty
    return loss, {"nll": nll.item(), "coverage_penalty": penalty.item()}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
