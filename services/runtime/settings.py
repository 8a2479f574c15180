"""Service settings, read from SYN_* environment variables, typed and validated once.

The environment is the single source: compose.yaml sets it per container and
`make up` sets the same variables per process, so both run the same stack.

`Settings` holds what every service shares. A service's own settings are a
small frozen dataclass of its own (services/<name>/settings.py) read with
`read_settings(TheirSettings, "SYN_<NAME>_")`: the same parser, so a bad value
stops start-up with a message naming the variable, never deep inside a handler.

Field types understood: str, int, float, bool, Path and tuple[str, ...]
(comma-separated). `field(metadata=...)` may add `choices` (allowed values)
and `min` (smallest allowed number).
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "SYN_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the SYN_* variable."""


def _parse(kind, raw: str, variable: str):
    text = raw.strip()
    try:
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError("expected true or false")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is Path:
            return Path(text)
        if typing.get_origin(kind) is tuple:
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return text
    except ValueError as exc:
        name = getattr(kind, "__name__", str(kind))
        raise SettingsError(f"{variable}={raw!r} is not a valid {name}: {exc}") from None


def _check(value, spec, variable: str) -> None:
    choices = spec.metadata.get("choices")
    if choices is not None and value not in choices:
        raise SettingsError(f"{variable}={value!r} must be one of: {', '.join(map(str, choices))}")
    smallest = spec.metadata.get("min")
    if smallest is not None and value < smallest:
        raise SettingsError(f"{variable}={value!r} must be at least {smallest}")


def read_settings(cls, prefix: str = PREFIX, overrides: Mapping[str, object] | None = None,
                  environ: Mapping[str, str] | None = None):
    """An instance of dataclass `cls` from `prefix + FIELD` variables (empty = default).

    `overrides` (command-line flags) win over the environment; None means "not given".
    """
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values = {}
    for spec in fields(cls):
        if spec.name.startswith("_"):
            continue
        variable = prefix + spec.name.upper()
        if overrides and overrides.get(spec.name) is not None:
            values[spec.name] = overrides[spec.name]
        elif environ.get(variable, "").strip() != "":
            values[spec.name] = _parse(hints[spec.name], environ[variable], variable)
        else:
            continue
        _check(values[spec.name], spec, variable)
    instance = cls(**values)
    validate = getattr(instance, "validate", None)
    if validate is not None:
        validate()
    return instance


def _readable(path: str, variable: str) -> None:
    if not Path(path).is_file():
        raise SettingsError(f"{variable}={path!r}: no such file")
    try:
        Path(path).read_bytes()
    except OSError as exc:
        raise SettingsError(f"{variable}={path!r}: cannot read it ({exc.strerror})") from None


@dataclass(frozen=True)
class Settings:
    """Settings every service shares (SYN_<FIELD>). Service-specific ones: `read_settings`."""

    host: str = "127.0.0.1"
    port: int = field(default=50051, metadata={"min": 0})
    # Prometheus /metrics HTTP port; 0 disables the exporter.
    metrics_port: int = field(default=0, metadata={"min": 0})
    # Address the exporter binds; empty = the service's own host, so metrics are exactly as exposed as gRPC.
    metrics_host: str = ""
    # "auto" picks cuda when present; "cpu", "cuda", "cuda:1" force one.
    device: str = "auto"
    max_message_bytes: int = field(default=16 * 1024 * 1024, metadata={"min": 1024})
    # Decoded-image guards, checked from the header: a small PNG can declare billions of
    # pixels, or a 1 x 16M strip that costs gigabytes to resize.
    max_image_pixels: int = field(default=4096 * 4096, metadata={"min": 1})
    max_image_side_px: int = field(default=8192, metadata={"min": 1})
    max_image_aspect_ratio: float = field(default=32.0, metadata={"min": 1.0})
    max_batch_size: int = field(default=16, metadata={"min": 1})
    max_batch_wait_ms: float = field(default=5.0, metadata={"min": 0})
    # Calls served concurrently before RESOURCE_EXHAUSTED; bounds queued memory.
    max_concurrent_rpcs: int = field(default=256, metadata={"min": 0})
    checkpoint_dir: Path = REPO_ROOT / "models" / "checkpoints"
    # The model repository (models/repository.py, docs/models.md); empty = checkpoint_dir.
    model_repository: str = ""
    drain_seconds: float = field(default=10.0, metadata={"min": 0})
    # When set, every call but health (and reflection, see below) must carry `authorization: Bearer <token>`.
    auth_token: str = ""
    # The same token from a file (a mounted secret); the file's content, stripped, is the token.
    auth_token_file: str = ""
    # TLS: this server's certificate chain and key (PEM). Both or neither.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # Mutual TLS: require a client certificate signed by these CAs (PEM). Needs the two above.
    tls_client_ca_file: str = ""
    # Server reflection: "on" (needs the token when auth is on), "open" (never needs it), "off".
    reflection: str = field(default="on", metadata={"choices": ("on", "open", "off")})
    log_level: str = "INFO"
    # "plain" lines for people, "json" (one object a line) for log pipelines.
    log_format: str = field(default="plain", metadata={"choices": ("plain", "json")})
    # One access-log line per finished call (request id, method, model, status, latency, batch, peer).
    log_requests: bool = True
    # OpenTelemetry: traces go to this OTLP/gRPC collector (e.g. http://collector:4317); empty = tracing off.
    otlp_endpoint: str = ""
    # Share of new traces recorded (a caller's sampling decision is always followed).
    trace_sample_ratio: float = field(default=1.0, metadata={"min": 0.0})
    torch_threads: int = field(default=0, metadata={"min": 0})
    # Models' notes on inputs plainly outside what they know (the built-ins: not ShapesWorld), in the
    # responses' `warnings`; false skips that check (the built-ins': about 0.07 ms of CPU per 64 px
    # picture in a batch, compiled with numba).
    input_warnings: bool = True
    # Each model's batches in a worker process of its own (services/runtime/model_process.py): the
    # model and the gRPC front end stop sharing one GIL, for a second interpreter per model. "auto" (the
    # default): on a CPU device with at least two usable CPUs, where it was measured to pay; true/false
    # force it.
    model_process: str = "auto"
    # The event loop every gRPC (and HTTP) front end of the service runs on: "uvloop" (libuv's, in
    # Cython: less CPU per call than the standard library's pure-Python loop, as Ray Serve's proxy and
    # Jina's gRPC servers run) or "asyncio" (the standard library's).
    event_loop: str = field(default="uvloop", metadata={"choices": ("uvloop", "asyncio")})

    def __post_init__(self) -> None:
        # log_level is matched case-insensitively; everything downstream sees upper case.
        object.__setattr__(self, "log_level", self.log_level.upper())
        # SYN_MODEL_PROCESS takes auto or any of the boolean spellings; stored as auto, true or false.
        mode = self.model_process.strip().lower()
        mode = "true" if mode in _TRUE else "false" if mode in _FALSE else "auto" if mode in ("", "auto") else None
        if mode is None:
            raise SettingsError(f"SYN_MODEL_PROCESS={self.model_process!r} must be auto, true or false")
        object.__setattr__(self, "model_process", mode)
        if self.auth_token_file and not self.auth_token:
            _readable(self.auth_token_file, "SYN_AUTH_TOKEN_FILE")
            object.__setattr__(self, "auth_token", Path(self.auth_token_file).read_text().strip())

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        return read_settings(cls, PREFIX, overrides)

    def validate(self) -> None:
        """Half a TLS configuration is an error, never a silent plaintext server."""
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            given, missing = (("SYN_TLS_CERT_FILE", "SYN_TLS_KEY_FILE") if self.tls_cert_file
                              else ("SYN_TLS_KEY_FILE", "SYN_TLS_CERT_FILE"))
            raise SettingsError(f"{given} is set but {missing} is not: TLS needs both (or neither, for plaintext)")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise SettingsError("SYN_TLS_CLIENT_CA_FILE (mutual TLS) needs SYN_TLS_CERT_FILE and SYN_TLS_KEY_FILE")
        for variable, path in (("SYN_TLS_CERT_FILE", self.tls_cert_file), ("SYN_TLS_KEY_FILE", self.tls_key_file),
                               ("SYN_TLS_CLIENT_CA_FILE", self.tls_client_ca_file)):
            if path:
                _readable(path, variable)
        if self.auth_token_file and not self.auth_token:
            raise SettingsError(f"SYN_AUTH_TOKEN_FILE={self.auth_token_file!r} holds an empty token")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"SYN_LOG_LEVEL={self.log_level!r} must be one of: DEBUG, INFO, WARNING, ERROR")
        if self.trace_sample_ratio > 1:
            raise SettingsError(f"SYN_TRACE_SAMPLE_RATIO={self.trace_sample_ratio} must be between 0 and 1")

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert_file)

    @property
    def reflection_needs_token(self) -> bool:
        return bool(self.auth_token) and self.reflection == "on"

    @staticmethod
    def env(name: str, default: str = "") -> str:
        """A raw service-specific variable: `env("CAPTIONING_HF_DIR")` reads SYN_CAPTIONING_HF_DIR.

        Prefer a typed dataclass read with `read_settings`; this stays for code not converted yet.
        """
        return os.environ.get(PREFIX + name.upper(), default)
