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
import socket
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from synesthesia.channels import ChannelSecurity


def _host_port(target: str) -> tuple[str, int] | None:
    """(host, port) of a plain "host:port" or "[v6]:port" target; None for a name scheme (dns:///, unix:)."""
    if "://" in target or target.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return None
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def listening(target: str, timeout_s: float = 3.0) -> bool | None:
    """Whether anything accepts TCP connections at a "host:port" target (None: not such a target).

    A probe that reaches a port before its service binds it can be handed that very port as its own
    local end, when the port lies in the kernel's ephemeral range (50050-50054 do on Linux): a TCP
    self-connection, which then holds the port, so the service fails to bind it ("Address already
    in use") for as long as the probe waits. A gRPC channel would wait out its whole deadline; this
    plain connection notices and lets go at once, and a gRPC call follows only once something listens
    (a bound port is never handed out as a local end).
    """
    address = _host_port(target)
    if address is None:
        return None
    try:
        with socket.create_connection(address, timeout=timeout_s) as sock:
            return sock.getsockname()[:2] != sock.getpeername()[:2]
    except OSError:
        return False


def status(target: str, service: str = "", timeout_s: float = 3.0,
           security: ChannelSecurity | None = None) -> str:
    """SERVING, NOT_SERVING, or UNREACHABLE (code: why) for one address.

    Over TLS / mutual TLS per `security` (default: plaintext).
    """
    if listening(target, timeout_s) is False:
        return "UNREACHABLE (UNAVAILABLE: nothing listens there)"
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
