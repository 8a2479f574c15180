"""Start real service processes on free loopback ports for tests and benchmarks."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from synesthesia.channels import ChannelSecurity
from synesthesia.services import SERVICES

REPO_ROOT = Path(__file__).resolve().parent.parent


# Ports a test picks and hands to a server that binds them later. They stay out of the
# kernel's ephemeral range on purpose: a port from that range (what bind(0) hands out)
# can be taken before the server binds it by any outgoing connection's local end, even
# by a client polling that very port before its server listens, which the kernel may
# turn into a TCP self-connection that then holds the port (seen in CI: "Address
# already in use" on a stack port). Ports outside the range are never assigned
# implicitly, so only another explicit bind can take them, and that is checked here.
_PICKED_PORTS = range(20000, 32768)
_random = random.SystemRandom()


def ephemeral_ports() -> range:
    """The kernel's range for outgoing connections and bind(0) (Linux's default where it cannot be read)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port free now and outside the ephemeral range (see _PICKED_PORTS)."""
    ephemeral = ephemeral_ports()
    pool = [p for p in _PICKED_PORTS if p not in ephemeral]
    for port in _random.sample(pool, min(len(pool), 500)):
        if port_is_free(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a kernel with no room outside its range
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_offset() -> int:
    """A --port-offset / SYN_PORT_OFFSET that puts every port of a stack on a free port outside the ephemeral range.

    With the default layout (gRPC 50050.., metrics 9100..) that is 10950..15455: gRPC above the
    range, metrics below it.
    """
    defaults = [port for s in SERVICES.values() for port in (s.port, s.metrics_port, s.http_port) if port]
    ephemeral = ephemeral_ports()
    fitting = [offset for offset in range(1024 - min(defaults), 65536 - max(defaults))
               if not any(port + offset in ephemeral for port in defaults)]
    for offset in _random.sample(fitting, min(len(fitting), 200)):
        if all(port_is_free(port + offset) for port in defaults):
            return offset
    raise RuntimeError(f"no stack port offset puts {defaults} on free ports outside {ephemeral}")


def health_status(target: str, service: str = "", timeout_s: float = 2.0, security: ChannelSecurity | None = None):
    """The health status enum value, or None when the server does not answer."""
    with (security or ChannelSecurity()).channel(target) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            ).status
        except grpc.RpcError:
            return None


@dataclass
class ServiceProcess:
    """A service started as `python -m <module> --port N` in its own process group."""

    module: str
    env: dict = field(default_factory=dict)
    log_dir: Path | None = None
    port: int = 0
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    # How to reach it when it serves TLS / mutual TLS (health needs no token).
    security: ChannelSecurity | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, wait: bool = True, timeout_s: float = 180.0) -> "ServiceProcess":
        self.port = self.port or free_port()
        log_dir = self.log_dir or Path(tempfile.mkdtemp(prefix="syn-test-"))
        self.log_path = log_dir / f"{self.module.replace('.', '_')}_{self.port}.log"
        env = {**os.environ, "SYN_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1", **self.env}
        env.setdefault("SYN_TORCH_THREADS", "1")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, "--port", str(self.port)],
                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        if wait:
            self.wait_serving(timeout_s)
        return self

    def wait_serving(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self.process.returncode}:\n{self.log_tail()}")
            if health_status(self.target, security=self.security) == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{self.module} not SERVING after {timeout_s}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        if not self.process:
            return None
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process:
            self.process.wait(10)
