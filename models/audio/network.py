"""Sound-source localisation, after Senocak et al., "Learning to Localize Sound
Source in Visual Scenes" (CVPR 2018).

An audio encoder turns a clip's log-mel spectrogram into one embedding; a
visual CNN keeps a spatial map of embeddings; the cosine similarity between
the sound and every location is the localisation map. `heatmap` turns it into
[0, 1] with a learnt affine + sigmoid (a monotone rescaling, so the peak and
the ranking of locations are the cosine's own).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.audio.features import FeatureConfig, LogMel
from models.configs import ManifestConfig


@dataclass(frozen=True)
class LocalizationConfig(ManifestConfig):
    sample_rate: int = 16000
    # Log-mel front end: 1024-point frames resolve the 220..523 Hz fundamentals
    # (15.6 Hz bins) and their harmonics, which tell the waveform (shape).
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 64
    image_size: int = 64
    embed_dim: int = 48
    width: int = 32
    audio_hidden: int = 256

    def features(self) -> FeatureConfig:
        return FeatureConfig(kind="log_mel", n_fft=self.n_fft, hop_length=self.hop_length, n_mels=self.n_mels,
                             window="hamming", center=False)


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class AudioEncoder(nn.Module):
    """Log-mel -> one embedding. The ShapesWorld sounds are stationary tones, so
    the time axis is pooled (mean and max per band): the result does not depend
    on the clip's length or on where in the clip the tone sits. The per-band
    profile holds the fundamental (colour), the harmonic pattern (shape) and
    the level (size)."""

    def __init__(self, config: LocalizationConfig) -> None:
        super().__init__()
        self.log_mel = LogMel(config.sample_rate, config.features())
        self.norm = nn.BatchNorm1d(2 * config.n_mels)
        self.mlp = nn.Sequential(
            nn.Linear(2 * config.n_mels, config.audio_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(config.audio_hidden, config.audio_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(config.audio_hidden, config.embed_dim),
        )

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        mel = self.log_mel(samples)  # [B, n_mels, frames]
        pooled = torch.cat([mel.mean(-1), mel.amax(-1)], dim=1)
        return self.mlp(self.norm(pooled))


class VisualEncoder(nn.Module):
    """64x64 RGB -> [embed_dim, 32, 32]. A 16x16 dilated branch sees whole
    objects (receptive field ~50 px) to tell shapes apart; a 32x32 skip keeps
    their outlines sharp."""

    def __init__(self, config: LocalizationConfig) -> None:
        super().__init__()
        w = config.width
        self.stem = nn.Sequential(_conv(3, w, stride=2), _conv(w, w), _conv(w, w))  # 32x32
        self.deep = nn.Sequential(
            _conv(w, 2 * w, stride=2), _conv(2 * w, 2 * w, dilation=2), _conv(2 * w, 2 * w, dilation=2)
        )  # 16x16
        self.fuse = nn.Sequential(_conv(3 * w, 2 * w), nn.Conv2d(2 * w, config.embed_dim, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        shallow = self.stem(images)
        deep = F.interpolate(self.deep(shallow), size=shallow.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([shallow, deep], dim=1))


class SoundLocalizer(nn.Module):
    def __init__(self, config: LocalizationConfig = LocalizationConfig()) -> None:
        super().__init__()
        self.config = config
        self.audio = AudioEncoder(config)
        self.visual = VisualEncoder(config)
        # Calibration of cosine -> probability of "this pixel makes the sound".
        self.logit_scale = nn.Parameter(torch.tensor(10.0))
        self.logit_bias = nn.Parameter(torch.tensor(-5.0))

    @staticmethod
    def prepare_images(images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] (any H, W) -> float [B, 3, 64, 64] in [-1, 1]."""
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return x

    def embed_audio(self, samples: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio(samples), dim=1)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Float images [B, 3, S, S] resized to the network's size -> unit embeddings [B, D, h, w]."""
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return F.normalize(self.visual(images), dim=1)

    def forward(self, images: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """Cosine maps [B, h, w] for matched pairs (image i with clip i)."""
        return torch.einsum("bdhw,bd->bhw", self.embed_images(images), self.embed_audio(samples))

    def all_pairs(self, images: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
        """Cosine maps [B_images, B_clips, h, w] for every image with every clip (contrastive training)."""
        return torch.einsum("bdhw,kd->bkhw", self.embed_images(images), self.embed_audio(samples))

    def heatmap(self, cosine: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Cosine maps [B, h, w] -> [B, H, W] values in [0, 1] at image resolution."""
        up = F.interpolate(cosine.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
        return torch.sigmoid(self.logit_scale * up + self.logit_bias)

    def logits(self, cosine: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * cosine + self.logit_bias
