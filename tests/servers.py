"""Start real service processes on free loopback ports for tests and benchmarks."""

from __future__ import annotations

import os
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

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
