"""STFT features on whatever device the samples live on: magnitude, power, log-mel.

Everything here is plain torch so the service and the localisation network
share one implementation; `tests/audio` checks it against numpy/scipy and
librosa references.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
import torchaudio.functional as AF

KINDS = ("magnitude", "power", "log_mel")
WINDOWS = ("hamming", "hann", "rectangular")
LOG_FLOOR = 1e-6
MAX_MELS = 256


@dataclass(frozen=True)
class FeatureConfig:
    """STFT parameters; defaults match audio.proto's documented ones."""

    kind: str = "log_mel"
    n_fft: int = 512
    # 0 means n_fft // 4.
    hop_length: int = 0
    window: str = "hamming"
    n_mels: int = 64
    # Pad n_fft // 2 on both sides (torch.stft's center=True, reflect padding).
    center: bool = False
    f_min: float = 0.0
    # 0 means the Nyquist frequency of the clip's sample rate.
    f_max: float = 0.0

    @property
    def hop(self) -> int:
        return self.hop_length or max(1, self.n_fft // 4)

    @property
    def bins(self) -> int:
        return self.n_mels if self.kind == "log_mel" else self.n_fft // 2 + 1

    def check(self) -> None:
        """Raise ValueError naming the first bad parameter (the service maps it to its proto field)."""
        if self.kind not in KINDS:
            raise ValueError(f"kind: {self.kind!r} is not one of {KINDS}")
        if self.window not in WINDOWS:
            raise ValueError(f"window: {self.window!r} is not one of {WINDOWS}")
        if self.n_fft < 2 or self.n_fft & (self.n_fft - 1):
            raise ValueError(f"n_fft: {self.n_fft} is not a power of two >= 2")
        if not 1 <= self.hop <= self.n_fft:
            raise ValueError(f"hop_length: {self.hop} is outside 1..n_fft ({self.n_fft})")
        if self.kind == "log_mel" and not 1 <= self.n_mels <= MAX_MELS:
            raise ValueError(f"n_mels: {self.n_mels} is outside 1..{MAX_MELS}")

    def frames(self, sample_count: int) -> int:
        """Number of STFT frames for a clip of `sample_count` samples (0 when it is too short)."""
        padded = sample_count + (2 * (self.n_fft // 2) if self.center else 0)
        return 0 if padded < self.n_fft else 1 + (padded - self.n_fft) // self.hop

    def to_dict(self) -> dict:
        return asdict(self)


def window(kind: str, n_fft: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Periodic windows, the STFT convention (scipy.signal.get_window(..., fftbins=True))."""
    if kind == "hamming":
        return torch.hamming_window(n_fft, periodic=True, device=device, dtype=dtype)
    if kind == "hann":
        return torch.hann_window(n_fft, periodic=True, device=device, dtype=dtype)
    if kind == "rectangular":
        return torch.ones(n_fft, device=device, dtype=dtype)
    raise ValueError(f"window: {kind!r} is not one of {WINDOWS}")


def _mel_range(config: FeatureConfig, sample_rate: int) -> tuple[float, float]:
    nyquist = sample_rate / 2.0
    f_max = min(config.f_max or nyquist, nyquist)
    return config.f_min, f_max


@lru_cache(maxsize=64)
def _mel_filters_cpu(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> torch.Tensor:
    # HTK mel scale, unnormalised triangles: the textbook definition, and what
    # librosa.filters.mel(htk=True, norm=None) computes.
    return AF.melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, norm=None, mel_scale="htk")


def mel_filters(config: FeatureConfig, sample_rate: int, device=None) -> torch.Tensor:
    """[n_fft // 2 + 1, n_mels] triangular filters."""
    f_min, f_max = _mel_range(config, sample_rate)
    return _mel_filters_cpu(config.n_fft // 2 + 1, f_min, f_max, config.n_mels, sample_rate).to(device)


def _hz_to_mel(hz):
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def frequencies_hz(config: FeatureConfig, sample_rate: int) -> list[float]:
    """Centre frequency of each output bin: linear FFT bins, or mel band centres."""
    if config.kind != "log_mel":
        return [k * sample_rate / config.n_fft for k in range(config.n_fft // 2 + 1)]
    f_min, f_max = _mel_range(config, sample_rate)
    lo, hi = _hz_to_mel(f_min), _hz_to_mel(f_max)
    step = (hi - lo) / (config.n_mels + 1)
    return [_mel_to_hz(lo + step * (m + 1)) for m in range(config.n_mels)]


def stft(samples: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Complex STFT, [..., n_fft // 2 + 1, frames], on the samples' device."""
    lead = samples.shape[:-1]
    flat = samples.reshape(-1, samples.shape[-1])
    spec = torch.stft(
        flat,
        n_fft=config.n_fft,
        hop_length=config.hop,
        win_length=config.n_fft,
        window=window(config.window, config.n_fft, device=samples.device, dtype=samples.dtype),
        center=config.center,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    return spec.reshape(*lead, *spec.shape[-2:])


def compute(samples: torch.Tensor, sample_rate: int, config: FeatureConfig) -> torch.Tensor:
    """Features of `samples` ([..., time], float32) as [..., bins, frames].

    magnitude = |STFT|, power = |STFT|^2, log_mel = log(mel . power + 1e-6)
    (natural log; the mel filters are HTK-scale triangles from torchaudio).
    """
    config.check()
    if config.frames(samples.shape[-1]) < 1:
        raise ValueError(f"n_fft: {config.n_fft} is longer than the clip ({samples.shape[-1]} samples)")
    spec = stft(samples, config)
    # re^2 + im^2 (and its root) rather than complex abs(): same values, several times faster on CPU.
    power = spec.real.square() + spec.imag.square()
    if config.kind == "magnitude":
        return power.sqrt()
    if config.kind == "power":
        return power
    filters = mel_filters(config, sample_rate, device=samples.device).to(power.dtype)
    mel = torch.matmul(power.transpose(-1, -2), filters).transpose(-1, -2)
    return torch.log(mel + LOG_FLOOR)


class LogMel(torch.nn.Module):
    """`compute` as a module, for networks that take raw 16 kHz clips."""

    def __init__(self, sample_rate: int, config: FeatureConfig) -> None:
        super().__init__()
        if config.kind != "log_mel":
            raise ValueError("LogMel needs kind='log_mel'")
        config.check()
        self.sample_rate = sample_rate
        self.config = config

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        return compute(samples, self.sample_rate, self.config)
