"""The gateway's own settings (SYN_GATEWAY_*, SYN_<UPSTREAM>_TARGET, SYN_HTTP_PORT), typed and checked once."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.runtime import read_settings
from synesthesia.services import UPSTREAMS


@dataclass(frozen=True)
class GatewaySettings:
    # How often upstream health is polled (the gateway is SERVING while any upstream is).
    health_interval_s: float = field(default=2.0, metadata={"min": 0.05})
    # Longest wait between reconnect attempts to a down upstream (gRPC's default grows to 120 s).
    max_reconnect_backoff_ms: int = field(default=1000, metadata={"min": 100})
    # The gateway's own bearer token for its upstreams; empty = its SYN_AUTH_TOKEN. Never the caller's
    # (docs/security.md says why).
    upstream_token: str = ""
    # 0 (the default) = off. A port for an nginx front that sends forwarded calls straight to their
    # upstream (about 0.5 ms a hop instead of 1.8 ms) and the rest to this gateway (services/gateway/front.py).
    front_port: int = field(default=0, metadata={"min": 0})
    # The nginx program the front runs (with its gRPC module: Debian's nginx-light has it).
    front_nginx: str = "nginx"

    @classmethod
    def from_env(cls) -> "GatewaySettings":
        return read_settings(cls, "SYN_GATEWAY_")


@dataclass(frozen=True)
class HttpSettings:
    """SYN_HTTP_PORT: the gateway's HTTP/JSON, /openapi.json and playground port (services/gateway/http/)."""

    # 0 (the default) serves no HTTP; compose and `make up` use 50080.
    http_port: int = field(default=0, metadata={"min": 0})

    @classmethod
    def from_env(cls) -> "HttpSettings":
        return read_settings(cls, "SYN_")


@dataclass(frozen=True)
class UpstreamTargets:
    """SYN_<NAME>_TARGET per upstream (host:port, or dns:///name:port for round-robin over replicas)."""

    captioning_target: str = ""
    generation_target: str = ""
    audio_target: str = ""
    embedding_target: str = ""

    @classmethod
    def from_env(cls) -> "UpstreamTargets":
        return read_settings(cls, "SYN_")

    def target(self, name: str) -> str:
        default = next(service.target for service in UPSTREAMS if service.name == name)
        return getattr(self, f"{name}_target", "") or default
