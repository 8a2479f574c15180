"""Device choice: CUDA when present, CPU otherwise, SYN_DEVICE overrides."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def select_device(requested: str = "auto") -> "torch.device":
    import torch  # lazily: the gateway never needs it

    if requested in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"SYN_DEVICE={requested} but CUDA is not available on this machine")
    return device


def describe(device: "torch.device") -> str:
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index}"
    return str(device)
