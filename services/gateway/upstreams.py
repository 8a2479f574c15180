"""Channels to the model services: retries, round-robin, deadlines and error naming in one place.

Every hop gets what is left of the caller's deadline; UNAVAILABLE is retried
with exponential backoff by gRPC itself (service config), and `dns:///host:port`
targets are balanced round-robin over every address the name resolves to
(compose replicas). An upstream failure comes back as a ServiceError with the
upstream's status code and a message naming the service and method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.runtime import ServiceError, Settings
from synesthesia.services import UPSTREAMS, Service

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


def channel_options(max_message_bytes: int) -> list[tuple[str, object]]:
    return [
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
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

    async def check(self, timeout_s: float = 2.0) -> tuple[int | None, str]:
        """(health status, "") when the upstream answers, (None, why) when it does not."""
        try:
            reply = await health_pb2_grpc.HealthStub(self.channel).Check(
                health_pb2.HealthCheckRequest(service=self.service.grpc_service), timeout=timeout_s
            )
        except grpc.RpcError as err:
            return None, f"{err.code().name}: {err.details()}"
        return reply.status, ""

    async def serving(self, timeout_s: float = 2.0) -> bool:
        status, _ = await self.check(timeout_s)
        return status == health_pb2.HealthCheckResponse.SERVING


def connect(settings: Settings) -> dict[str, Upstream]:
    upstreams = {}
    for service in UPSTREAMS:
        target = settings.env(f"{service.name.upper()}_TARGET", service.target)
        channel = grpc.aio.insecure_channel(target, options=channel_options(settings.max_message_bytes))
        upstreams[service.name] = Upstream(service.name, target, channel, service.stub(channel), service)
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
    try:
        return await getattr(upstream.stub, method)(request, timeout=timeout if timeout is not None
                                                    else default_timeout_s)
    except grpc.aio.AioRpcError as err:
        raise ServiceError(
            err.code(), f"upstream {upstream.name}.{method} at {upstream.target} failed: "
                        f"{err.code().name}: {err.details()}"
        ) from None
