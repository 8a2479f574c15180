"""The services of a Synesthesia stack: the one table every other list derives from.

The gateway's upstreams, the client's and CLI's defaults, `make up`, the tests,
and the checks of compose.yaml, the Dockerfile and the Kubernetes manifests
all read this table; add a service here and they follow (or their tests say
what still lists the old set).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    """One service: its name (compose service, `services.<name>` module, proto file), gRPC service and ports."""

    name: str
    # Fully qualified gRPC service name, as health checks and reflection name it.
    grpc_service: str
    # Default gRPC port (compose, `make up`, Kubernetes and the client defaults use it).
    port: int
    # Default Prometheus /metrics port.
    metrics_port: int
    # Default HTTP/JSON port (the gateway's SYN_HTTP_PORT: JSON, /openapi.json, playground); 0 = none.
    http_port: int = 0

    @property
    def target(self) -> str:
        """The service's address on a local stack."""
        return f"127.0.0.1:{self.port}"

    @property
    def target_variable(self) -> str:
        """The SYN_* variable that points the gateway (and `syn --<name>`) at this service."""
        return f"SYN_{self.name.upper()}_TARGET"

    @property
    def module(self) -> str:
        """`python -m <module>` runs it."""
        return f"services.{self.name}"

    @property
    def short_name(self) -> str:
        """The gRPC service's name without its package, e.g. "Embedding"."""
        return self.grpc_service.rsplit(".", 1)[1]

    def pb2(self):
        """The generated message module, e.g. synesthesia.v1.embedding_pb2."""
        return importlib.import_module(f"synesthesia.v1.{self.name}_pb2")

    def stub(self, channel):
        """A client stub for this service on `channel`."""
        module = importlib.import_module(f"synesthesia.v1.{self.name}_pb2_grpc")
        return getattr(module, f"{self.short_name}Stub")(channel)

    def descriptor(self):
        """The protobuf ServiceDescriptor (its methods and their streaming kinds)."""
        return self.pb2().DESCRIPTOR.services_by_name[self.short_name]


GATEWAY = Service("gateway", "synesthesia.v1.Gateway", 50050, 9100, http_port=50080)
# The model services behind the gateway, in the order the gateway and `make up` list them.
UPSTREAMS: tuple[Service, ...] = (
    Service("captioning", "synesthesia.v1.Captioning", 50051, 9101),
    Service("generation", "synesthesia.v1.Generation", 50052, 9102),
    Service("audio", "synesthesia.v1.Audio", 50053, 9103),
    Service("embedding", "synesthesia.v1.Embedding", 50054, 9104),
)
SERVICES: dict[str, Service] = {s.name: s for s in (GATEWAY, *UPSTREAMS)}
UPSTREAM_NAMES: tuple[str, ...] = tuple(s.name for s in UPSTREAMS)
