"""`python -m services.runtime.healthcheck [HOST:PORT] [SERVICE]`: exit 0 when SERVING.

Used by compose health checks and by `make up`, so both judge readiness the same way.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, service: str = "", timeout_s: float = 3.0) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str]) -> int:
    import os

    target = argv[0] if argv else f"127.0.0.1:{os.environ.get('SYN_PORT', '50051')}"
    service = argv[1] if len(argv) > 1 else ""
    return 0 if check(target, service) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
