"""Channels to the model services: retries, round-robin, deadlines and error naming in one place.

Every hop gets what is left of the caller's deadline; UNAVAILABLE is retried
with exponential backoff by gRPC itself (service config), and `dns:///host:port`
targets are balanced round-robin over every address the name resolves to
(compose replicas). An upstream failure comes back as a ServiceError with the
upstream's status code and a message naming the service and method.

Security: channels speak TLS (mutual TLS with a client certificate) from the
same SYN_CLIENT_* variables as every other caller (synesthesia/channels.py).
Every call carries the caller's `x-request-id` (so one id finds the call's
lines in every service's log), the trace context when tracing is on, and the
gateway's OWN bearer token: SYN_GATEWAY_UPSTREAM_TOKEN, else the gateway's
SYN_AUTH_TOKEN (one shared secret for the whole stack). The caller's token is
never forwarded: it authenticates the caller to the published gateway, while
upstreams are internal services that trust the gateway itself; forwarding
would let whoever holds a public token call the internal services directly
and would tie internal credentials to public ones (rotation, scoping).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.gateway.settings import GatewaySettings, UpstreamTargets
from services.runtime import REQUEST_ID, ServiceError, Settings, metrics, tracing
from synesthesia.channels import ChannelSecurity
from synesthesia.services import UPSTREAMS, Service
from synesthesia.status import field_violations

SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{}],  # every method of every service on the channel
        "retryPolicy": {
            "maxAttempts": 4,
            "initialBackoff": "0.1s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
})


# gRPC's default reconnect backoff grows to 120 s: after a long outage the gateway kept failing for
# 20 s after its upstream was back. Capped at SYN_GATEWAY_MAX_RECONNECT_BACKOFF_MS (1 s), a restarted
# upstream is used again within about that much (plus the health poll, SYN_GATEWAY_HEALTH_INTERVAL_S).
DEFAULT_MAX_RECONNECT_BACKOFF_MS = 1000


def channel_options(max_message_bytes: int,
                    max_reconnect_backoff_ms: int = DEFAULT_MAX_RECONNECT_BACKOFF_MS) -> list[tuple[str, object]]:
    return [
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        ("grpc.initial_reconnect_backoff_ms", min(100, max_reconnect_backoff_ms)),
        ("grpc.min_reconnect_backoff_ms", min(100, max_reconnect_backoff_ms)),
        ("grpc.max_reconnect_backoff_ms", max_reconnect_backoff_ms),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


@dataclass
class Upstream:
    name: str
    target: str
    channel: grpc.aio.Channel
    stub: object
    service: Service
    # ("authorization", "Bearer <the gateway's upstream token>") or nothing.
    auth: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What every call to this upstream carries: the gateway's token and the current request id."""
        request_id = REQUEST_ID.get()
        return self.auth + ((("x-request-id", request_id),) if request_id else ())

    async def check(self, timeout_s: float = 2.0) -> tuple[int | None, str]:
        """(health status, "") when the upstream answers, (None, why) when it does not."""
        try:
            reply = await health_pb2_grpc.HealthStub(self.channel).Check(
                health_pb2.HealthCheckRequest(service=self.service.grpc_service), timeout=timeout_s
            )
        except grpc.RpcError as err:
            metrics.UPSTREAM_UP.labels(self.name).set(0)
            return None, f"{err.code().name}: {err.details()}"
        metrics.UPSTREAM_UP.labels(self.name).set(1 if reply.status == health_pb2.HealthCheckResponse.SERVING else 0)
        return reply.status, ""

    async def serving(self, timeout_s: float = 2.0) -> bool:
        status, _ = await self.check(timeout_s)
        return status == health_pb2.HealthCheckResponse.SERVING


def upstream_security(settings: Settings, own: GatewaySettings) -> ChannelSecurity:
    """SYN_CLIENT_* for the transport; the gateway's own token (see the module doc) for every call."""
    return ChannelSecurity.from_env().with_token(own.upstream_token or settings.auth_token)


def connect(settings: Settings, own: GatewaySettings) -> dict[str, Upstream]:
    security = upstream_security(settings, own)
    targets = UpstreamTargets.from_env()
    backoff_ms = own.max_reconnect_backoff_ms
    upstreams = {}
    for service in UPSTREAMS:
        target = targets.target(service.name)
        channel = security.aio_channel(target, channel_options(settings.max_message_bytes, backoff_ms),
                                       interceptors=tracing.client_interceptors())
        upstreams[service.name] = Upstream(service.name, target, channel, service.stub(channel), service,
                                           security.metadata())
    return upstreams


def remaining(context) -> float | None:
    """Seconds left of the caller's deadline (None when it set none)."""
    left = context.time_remaining() if context is not None else None
    if left is not None and left <= 0:
        raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before calling upstream")
    return left


async def call(upstream: Upstream, method: str, request, context, default_timeout_s: float = 120.0):
    """`upstream.stub.<method>(request)` with the remaining deadline; failures name the upstream."""
    timeout = remaining(context)
    started = time.perf_counter()
    try:
        return await getattr(upstream.stub, method)(request, timeout=timeout if timeout is not None
                                                    else default_timeout_s, metadata=upstream.metadata())
    except grpc.aio.AioRpcError as err:
        metrics.UPSTREAM_ERRORS.labels(upstream.name, method, err.code().name).inc()
        # The upstream's field violations go on to the caller: a client (the CLI, the playground) can
        # point at the field it filled, whichever hop refused it.
        raise ServiceError(
            err.code(), f"upstream {upstream.name}.{method} at {upstream.target} failed: "
                        f"{err.code().name}: {err.details()}", field_violations(err)
        ) from None
    finally:
        metrics.UPSTREAM_SECONDS.labels(upstream.name, method).observe(time.perf_counter() - started)
