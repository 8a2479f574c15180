"""`python -m synesthesia.healthcheck [HOST:PORT] [SERVICE]`: exit 0 when SERVING (grpc.health.v1).

The containers' health probe, `make up`'s readiness check and `syn health` judge
readiness with this one function. It imports grpc, the health stubs and the
channel settings only (never torch or a service), so a probe costs about a third
of a second of CPU and does not time out behind a busy model.

It speaks TLS and mutual TLS from the same SYN_CLIENT_* variables as every other
caller (see synesthesia/channels.py), or from flags: --ca, --cert, --key,
--server-name, --tls. Health needs no token; SYN_TOKEN is sent when set all the
same, for proxies in front of the service that want one.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from synesthesia.channels import ChannelSecurity


def status(target: str, service: str = "", timeout_s: float = 3.0,
           security: ChannelSecurity | None = None) -> str:
    """SERVING, NOT_SERVING, or UNREACHABLE (code: why) for one address.

    Over TLS / mutual TLS per `security` (default: plaintext).
    """
    security = security or ChannelSecurity()
    with security.channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                              timeout=timeout_s, metadata=security.metadata())
        except grpc.RpcError as err:
            return f"UNREACHABLE ({err.code().name}: {err.details()})"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def check(target: str, service: str = "", timeout_s: float = 3.0, security: ChannelSecurity | None = None) -> bool:
    return status(target, service, timeout_s, security) == "SERVING"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m synesthesia.healthcheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?", default=f"127.0.0.1:{os.environ.get('SYN_PORT', '50051')}")
    parser.add_argument("service", nargs="?", default="")
    parser.add_argument("--ca", help="PEM roots for the server certificate (SYN_CLIENT_CA_FILE)")
    parser.add_argument("--cert", help="client certificate for mutual TLS (SYN_CLIENT_CERT_FILE)")
    parser.add_argument("--key", help="client key for mutual TLS (SYN_CLIENT_KEY_FILE)")
    parser.add_argument("--server-name", help="name expected in the server certificate (SYN_CLIENT_SERVER_NAME)")
    parser.add_argument("--tls", action="store_true", default=None, help="TLS with the system roots")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds")
    parser.add_argument("--verbose", "-v", action="store_true", help="print the status")
    args = parser.parse_args(argv)
    try:
        security = ChannelSecurity.from_env(ca_file=args.ca, cert_file=args.cert, key_file=args.key,
                                            server_name=args.server_name, tls=args.tls)
    except ValueError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 2
    result = status(args.target, args.service, args.timeout, security)
    if args.verbose or result != "SERVING":
        print(f"{args.target}: {result}", file=sys.stderr if result != "SERVING" else sys.stdout)
    return 0 if result == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
