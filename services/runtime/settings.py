"""Service settings, read from SYN_* environment variables.

The environment is the single source: compose.yaml sets it per container and
`make up` sets the same variables per process, so both run the same stack.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "SYN_"


def _env(name: str, default: str) -> str:
    return os.environ.get(PREFIX + name, default)


@dataclass(frozen=True)
class Settings:
    """Settings every service shares. Service-specific ones go through `env()`."""

    host: str = "127.0.0.1"
    port: int = 50051
    # Prometheus /metrics HTTP port; 0 disables the exporter.
    metrics_port: int = 0
    # "auto" picks cuda when present; "cpu", "cuda", "cuda:1" force one.
    device: str = "auto"
    max_message_bytes: int = 16 * 1024 * 1024
    # Decoded-image guard: a small PNG can declare billions of pixels.
    max_image_pixels: int = 4096 * 4096
    max_batch_size: int = 16
    max_batch_wait_ms: float = 5.0
    # Calls served concurrently before RESOURCE_EXHAUSTED; bounds queued memory.
    max_concurrent_rpcs: int = 256
    checkpoint_dir: Path = REPO_ROOT / "models" / "checkpoints"
    drain_seconds: float = 10.0
    # When set, every call must carry `authorization: Bearer <token>`.
    auth_token: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    log_level: str = "INFO"
    torch_threads: int = 0
    _overrides: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        values = {}
        for f in fields(cls):
            if f.name.startswith("_"):
                continue
            raw = os.environ.get(PREFIX + f.name.upper())
            if f.name in overrides and overrides[f.name] is not None:
                values[f.name] = overrides[f.name]
            elif raw is not None and raw != "":
                values[f.name] = _coerce(f.type, raw, f.name)
        return cls(**values)

    @staticmethod
    def env(name: str, default: str = "") -> str:
        """A service-specific setting: `env("CAPTIONING_HF_DIR")` reads SYN_CAPTIONING_HF_DIR."""
        return _env(name.upper(), default)


def _coerce(kind, raw: str, name: str):
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        return raw
    except ValueError as exc:
        raise SystemExit(f"{PREFIX}{name.upper()}={raw!r} is not a valid {kind}") from exc
