"""DF-GAN (Tao et al., CVPR 2022; tobran/DF-GAN) served from its released files.

An entry (docs/generation.md has the steps from the downloaded files)::

    task: text-to-image
    family: dfgan
    path: bird/state_epoch_1220.pth           # the training state: {'model': {'netG', 'netD', 'netC'}, ...}
    options:
      text_encoder: bird/text_encoder200.pth  # the DAMSM text encoder (a state_dict: encoder.*, rnn.*)
      vocabulary: bird/vocab.json             # python -m models.generation.dfgan_vocab captions_DAMSM.pickle ...
      truncation: true                        # DF-GAN's cfg: truncated noise ...
      trunc_rate: 0.88                        # ... truncnorm(-2, 2) * trunc_rate

Only `model.netG` is taken from the training state (a `module.` prefix stripped); both files
are read with `torch.load(weights_only=True)` and must fit exactly. The generator's widths
(nf, every block's channels), the noise and condition sizes and the output size (4 px doubled
by each block: 256 px for the released CUB / COCO weights) are read from the tensors; the
text encoder's embedding width, hidden size and direction count likewise, and its row count
must equal the vocabulary's size (DF-GAN builds RNN_ENCODER(len(wordtoix))).

A prompt is tokenised as DF-GAN's sampling script does (lower-case, `\\w+`, non-ASCII dropped),
words outside the vocabulary are skipped and reported, and the DAMSM bi-LSTM encodes the
prompt alone: the sentence vector is the last hidden state of both directions. netG sees
[noise, sentence] in every block's affine layers; its tanh output is mapped to pixels as
torchvision's save_image(normalize=True, value_range=(-1, 1)) does in the sampling script.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.generation.dfgan_vocab import VocabularyError, read_vocabulary, tokenize
from models.generation.sampling import PromptEmbeddings, generate_in_chunks
from models.hf import LoadError
from models.repository import PYTORCH_CHECKPOINT, ModelDetails, ModelEntry
from models.state_dicts import load_exactly, read_pth, require, state_dict_at
from models.training import sha256_file

FAMILY = "dfgan"
OPTIONS = {"text_encoder", "vocabulary", "truncation", "trunc_rate", "chunk"}
# DF-GAN's cfg/bird.yml and cfg/coco.yml: truncation: True, trunc_rate: 0.88; lib/utils.truncated_noise
# draws truncnorm(-2, 2).
TRUNCATION_BOUND = 2.0
DEFAULT_TRUNC_RATE = 0.88
DEFAULT_CHUNK = 8


# --- the networks, key for key as DF-GAN's code/models/GAN.py and DAMSM.py --------------------------

class Affine(nn.Module):
    """Per-channel scale and shift predicted from the condition by two small MLPs."""

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.fc_gamma = nn.Sequential(OrderedDict([("linear1", nn.Linear(cond_dim, channels)),
                                                   ("relu1", nn.ReLU()),
                                                   ("linear2", nn.Linear(channels, channels))]))
        self.fc_beta = nn.Sequential(OrderedDict([("linear1", nn.Linear(cond_dim, channels)),
                                                  ("relu1", nn.ReLU()),
                                                  ("linear2", nn.Linear(channels, channels))]))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.fc_gamma(cond)[:, :, None, None] * x + self.fc_beta(cond)[:, :, None, None]


class FusionBlock(nn.Module):
    """DF-GAN's DFBLK: affine, LeakyReLU, affine, LeakyReLU."""

    def __init__(self, cond_dim: int, channels: int) -> None:
        super().__init__()
        self.affine0 = Affine(cond_dim, channels)
        self.affine1 = Affine(cond_dim, channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.affine0(x, cond), 0.2)
        return F.leaky_relu(self.affine1(x, cond), 0.2)


class GBlock(nn.Module):
    """Nearest 2x upsampling, then shortcut (1x1 conv when the width changes) plus fuse-conv-fuse-conv."""

    def __init__(self, cond_dim: int, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.c2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        self.fuse1 = FusionBlock(cond_dim, in_ch)
        self.fuse2 = FusionBlock(cond_dim, out_ch)
        self.c_sc = nn.Conv2d(in_ch, out_ch, 1, 1, 0) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2)
        shortcut = self.c_sc(x) if self.c_sc is not None else x
        return shortcut + self.c2(self.fuse2(self.c1(self.fuse1(x, cond)), cond))


class NetG(nn.Module):
    """noise -> fc -> [C0, 4, 4] -> GBlocks (each doubling the size) -> LeakyReLU, conv to RGB, tanh."""

    def __init__(self, noise_dim: int, cond_dim: int, channels: list[tuple[int, int]], out_channels: int = 3) -> None:
        super().__init__()
        self.first_channels = channels[0][0]
        self.fc = nn.Linear(noise_dim, self.first_channels * 4 * 4)
        self.GBlocks = nn.ModuleList([GBlock(noise_dim + cond_dim, i, o) for i, o in channels])
        self.to_rgb = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(channels[-1][1], out_channels, 3, 1, 1), nn.Tanh())

    def forward(self, noise: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        out = self.fc(noise).view(len(noise), self.first_channels, 4, 4)
        cond = torch.cat((noise, sentence), dim=1)
        for block in self.GBlocks:
            out = block(out, cond)
        return self.to_rgb(out)


class DamsmTextEncoder(nn.Module):
    """AttnGAN's RNN_ENCODER at inference: word embedding, one-layer (bi-)LSTM; the sentence vector is
    the final hidden state of each direction, concatenated."""

    def __init__(self, words: int, embedding_dim: int, hidden: int, bidirectional: bool) -> None:
        super().__init__()
        self.encoder = nn.Embedding(words, embedding_dim)
        self.rnn = nn.LSTM(embedding_dim, hidden, 1, batch_first=True, bidirectional=bidirectional)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.rnn(self.encoder(ids))
        return hidden.transpose(0, 1).reshape(len(ids), -1)


# --- reading the architecture from the tensors ------------------------------------------------------

def netg_layout(name: str, path: Path, state: dict[str, torch.Tensor]) -> tuple[int, int, list[tuple[int, int]], int]:
    """(noise_dim, noise_dim + cond_dim, [(in, out) per GBlock], output channels) from netG's tensors."""
    fc = require(name, path, state, "fc.weight", 2)
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"GBlocks\.(\d+)\.", k))})
    if not blocks or blocks != list(range(len(blocks))):
        raise LoadError(f"model {name!r}: {path} does not fit DF-GAN's netG: GBlocks numbered {blocks[:10]} "
                        "(expected 0..n-1)")
    channels = []
    for i in blocks:
        conv = require(name, path, state, f"GBlocks.{i}.c1.weight", 4)
        channels.append((int(conv.shape[1]), int(conv.shape[0])))
    cond = require(name, path, state, "GBlocks.0.fuse1.affine0.fc_gamma.linear1.weight", 2)
    rgb = require(name, path, state, "to_rgb.1.weight", 4)
    return int(fc.shape[1]), int(cond.shape[1]), channels, int(rgb.shape[0])


def text_encoder_layout(name: str, path: Path, state: dict[str, torch.Tensor]) -> tuple[int, int, int, bool]:
    """(words, embedding width, hidden size per direction, bidirectional) from the DAMSM encoder's tensors."""
    embedding = require(name, path, state, "encoder.weight", 2)
    hidden = require(name, path, state, "rnn.weight_hh_l0", 2)
    layers = {k for k in state if re.match(r"rnn\.weight_hh_l[1-9]", k)}
    if layers:
        raise LoadError(f"model {name!r}: {path} is a multi-layer LSTM ({', '.join(sorted(layers))}); DAMSM's "
                        "sentence vector is defined for one layer")
    return (int(embedding.shape[0]), int(embedding.shape[1]), int(hidden.shape[1]),
            "rnn.weight_hh_l0_reverse" in state)


# --- the served model -------------------------------------------------------------------------------

class DFGAN:
    """DF-GAN's netG and DAMSM text encoder behind the TextToImageGenerator interface."""

    def __init__(self, entry: ModelEntry, device) -> None:
        name = entry.name
        unknown = set(entry.options) - OPTIONS
        if unknown:
            raise LoadError(f"{entry.origin}: model {name!r}: unknown options {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(sorted(OPTIONS))})")
        encoder_path, vocabulary_path = entry.path_option("text_encoder"), entry.path_option("vocabulary")
        self.device = torch.device(device)
        self.chunk = int(entry.option("chunk", DEFAULT_CHUNK))
        if self.chunk < 1:
            raise LoadError(f"{entry.origin}: model {name!r}: chunk must be >= 1, got {self.chunk}")
        self.noise_truncation = _truncation(entry)

        generator_state = state_dict_at(name, entry.path, read_pth(name, entry.path), ("model", "netG"))
        noise_dim, cond_total, channels, out_channels = netg_layout(name, entry.path, generator_state)
        if out_channels != 3:
            raise LoadError(f"model {name!r}: {entry.path} makes {out_channels}-channel images; RGB (3) is served")
        self.netG = load_exactly(name, entry.path, NetG(noise_dim, cond_total - noise_dim, channels),
                                 generator_state).to(self.device).eval()

        encoder_state = state_dict_at(name, encoder_path, read_pth(name, encoder_path))
        words, embedding_dim, hidden, bidirectional = text_encoder_layout(name, encoder_path, encoder_state)
        self.text_encoder = load_exactly(name, encoder_path,
                                         DamsmTextEncoder(words, embedding_dim, hidden, bidirectional),
                                         encoder_state).to(self.device).eval()
        sentence_dim = hidden * (2 if bidirectional else 1)
        if cond_total - noise_dim != sentence_dim:
            raise LoadError(f"model {name!r}: {entry.path}'s netG takes a {cond_total - noise_dim}-d sentence "
                            f"({cond_total} = noise {noise_dim} + sentence) but {encoder_path} gives {sentence_dim}-d; "
                            "use the DAMSM encoder the GAN was trained with")
        try:
            self.wordtoix = read_vocabulary(vocabulary_path)
        except VocabularyError as exc:
            raise LoadError(f"model {name!r}: {exc}") from None
        if len(self.wordtoix) != words:
            raise LoadError(f"model {name!r}: {vocabulary_path} has {len(self.wordtoix)} words but {encoder_path} "
                            f"embeds {words}; convert the captions pickle of the same data set")

        self.noise_dim = noise_dim
        self.image_size = 4 * 2 ** len(channels)
        # The words a prompt can reach (not DAMSM's "<end>", which the tokeniser never yields), by index.
        self.vocabulary = [w for w in sorted(self.wordtoix, key=self.wordtoix.__getitem__) if tokenize(w) == [w]]
        self._sentence = PromptEmbeddings(self._encode)
        sha256 = sha256_file(entry.path)
        fingerprint = hashlib.sha256(
            "".join([sha256, sha256_file(encoder_path), sha256_file(vocabulary_path)]).encode()).hexdigest()
        parameters = sum(p.numel() for p in (*self.netG.parameters(), *self.text_encoder.parameters()))
        self.details = ModelDetails(
            FAMILY, str(entry.path), sha256, parameter_count=parameters, fingerprint=fingerprint,
            architecture=f"df-gan (nf {channels[-1][1]}, {len(channels)} blocks, {self.image_size} px; damsm "
                         f"{'bi-' if bidirectional else ''}lstm {sentence_dim}-d, {words} words)",
            backend=PYTORCH_CHECKPOINT)

    def encode_prompt(self, prompt: str) -> tuple[tuple, list[str]]:
        words = tokenize(prompt)
        return tuple(self.wordtoix[w] for w in words if w in self.wordtoix), [w for w in words if w not in self.wordtoix]

    def _encode(self, ids: tuple[int, ...]) -> torch.Tensor:
        return self.text_encoder(torch.tensor([ids], dtype=torch.long, device=self.device))

    def generate(self, tokens: list[tuple], noise: list[torch.Tensor]) -> list[np.ndarray]:
        images = generate_in_chunks(self.netG, [self._sentence(t) for t in tokens], noise, self.chunk, self.device)
        return [to_pixels(i) for i in images]


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """[n, 3, H, W] in [-1, 1] -> uint8 [n, H, W, 3], as save_image(normalize=True, value_range=(-1, 1))."""
    scaled = images.clamp(-1, 1).add(1).div(2).mul(255).add(0.5).clamp(0, 255)
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _truncation(entry: ModelEntry) -> tuple[float, float] | None:
    truncation, rate = entry.option("truncation", True), entry.option("trunc_rate", DEFAULT_TRUNC_RATE)
    if not isinstance(truncation, bool):
        raise LoadError(f"{entry.origin}: model {entry.name!r}: options.truncation must be true or false")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise LoadError(f"{entry.origin}: model {entry.name!r}: options.trunc_rate must be in (0, 1], got {rate!r}")
    return (TRUNCATION_BOUND, float(rate)) if truncation else None


def load(entry: ModelEntry, device) -> DFGAN:
    return DFGAN(entry, device)
