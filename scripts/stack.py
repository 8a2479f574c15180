"""The local stack: compose.yaml's services as plain processes.

    python -m scripts.stack up [--port-offset N] [--run-dir run]   # start, wait for health
    python -m scripts.stack status
    python -m scripts.stack down
    python -m scripts.stack demo [--keep]                          # up + a chained example of each kind

compose.yaml is the single source of settings: each service's command, SYN_*
environment and port come from it. Only what cannot be the same outside a
container is translated: compose hostnames become 127.0.0.1, bind addresses
become loopback, named volumes become folders under the run directory, and
one process runs per service (replicas need distinct ports locally).

Security settings come from the calling shell like any other: SYN_TLS_*,
SYN_AUTH_TOKEN and SYN_GATEWAY_UPSTREAM_TOKEN reach every process, and the
readiness checks here speak TLS / mutual TLS from the same SYN_CLIENT_*
variables the gateway uses for its upstreams (docs/security.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from synesthesia.services import GATEWAY as GATEWAY_SERVICE

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
GATEWAY = GATEWAY_SERVICE.name


@dataclass
class LocalService:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    depends_on: list[str]


def _shift_port(value: str, offset: int) -> str:
    return str(int(value) + offset)


def local_services(compose_path: Path = COMPOSE_FILE, port_offset: int = 0,
                   run_dir: Path = ROOT / "run") -> list[LocalService]:
    """compose.yaml's services translated to local processes, dependencies first."""
    compose = yaml.safe_load(compose_path.read_text())
    names = list(compose["services"])
    host_ref = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r"):(\d+)\b")
    services = []
    for name, spec in compose["services"].items():
        argv = [str(a) for a in spec["command"]]
        argv = [sys.executable if a == "python" else a for a in argv]
        port = int(argv[argv.index("--port") + 1]) + port_offset
        argv[argv.index("--port") + 1] = str(port)
        volumes = {}
        for volume in spec.get("volumes", []):
            source, target = str(volume).split(":")[:2]
            volumes[target] = run_dir / "volumes" / source
        env = {}
        for key, value in (spec.get("environment") or {}).items():
            value = str(value)
            if key == "SYN_HOST":
                value = "127.0.0.1"
            elif key in ("SYN_METRICS_PORT", "SYN_HTTP_PORT") and value != "0":
                value = _shift_port(value, port_offset)
            value = host_ref.sub(lambda m: f"127.0.0.1:{int(m.group(2)) + port_offset}", value)
            for target, local in volumes.items():
                if value == target or value.startswith(target + "/"):
                    value = str(local) + value[len(target):]
            env[key] = value
        depends = spec.get("depends_on") or []
        services.append(LocalService(name, argv, env, port, list(depends)))
    ordered, done = [], set()
    while len(ordered) < len(services):
        for service in services:
            if service.name not in done and all(d in done for d in service.depends_on):
                ordered.append(service)
                done.add(service.name)
    return ordered


def _is_zombie(pid: int) -> bool:
    # A child that exited but was not reaped yet (we started it) still answers kill(pid, 0).
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return True
    return False


class Stack:
    def __init__(self, run_dir: Path, port_offset: int = 0) -> None:
        self.run_dir = run_dir
        self.port_offset = port_offset
        self.services = local_services(port_offset=port_offset, run_dir=run_dir)
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        (run_dir / "pids").mkdir(parents=True, exist_ok=True)

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / "pids" / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        try:
            pid = int(self._pid_file(name).read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return None if _is_zombie(pid) else pid

    def target(self, name: str) -> str:
        return f"127.0.0.1:{next(s.port for s in self.services if s.name == name)}"

    @staticmethod
    def _check(target: str) -> bool:
        from synesthesia.channels import ChannelSecurity
        from synesthesia.healthcheck import check

        return check(target, security=ChannelSecurity.from_env())

    def up(self, timeout_s: float = 600.0, log=print) -> None:
        """Start the model services, wait until they serve, then start the gateway (compose.yaml's
        depends_on: service_healthy). Started together, the gateway's reconnects to upstreams still
        loading could take an upstream's port before it binds (see synesthesia.healthcheck.listening)."""
        deadline = time.monotonic() + timeout_s
        upstreams = [s for s in self.services if s.name != GATEWAY]
        for stage in (upstreams, [s for s in self.services if s.name == GATEWAY]):
            for service in stage:
                self._start(service, log)
            for service in stage:
                self._wait(service, deadline, timeout_s, log)

    def _start(self, service: LocalService, log) -> None:
        for volume in service.env.values():
            if str(self.run_dir / "volumes") in volume:
                Path(volume).mkdir(parents=True, exist_ok=True)
        if self.pid(service.name):
            log(f"{service.name}: already running (pid {self.pid(service.name)})")
            return
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **service.env}
        with open(self.run_dir / "logs" / f"{service.name}.log", "ab") as out:
            process = subprocess.Popen(service.argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self._pid_file(service.name).write_text(str(process.pid))
        log(f"{service.name}: started pid {process.pid} on {self.target(service.name)}")

    def _wait(self, service: LocalService, deadline: float, timeout_s: float, log) -> None:
        while not self._check(self.target(service.name)):
            if not self.pid(service.name):
                tail = (self.run_dir / "logs" / f"{service.name}.log").read_text(errors="replace")[-3000:]
                raise SystemExit(f"{service.name} exited during start-up; log tail:\n{tail}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{service.name} not healthy after {timeout_s:.0f}s; see "
                                 f"{self.run_dir / 'logs' / (service.name + '.log')}")
            time.sleep(0.5)
        log(f"{service.name}: SERVING on {self.target(service.name)}")

    def down(self, grace_s: float = 20.0, log=print) -> None:
        for service in reversed(self.services):
            pid = self.pid(service.name)
            if pid:
                os.killpg(pid, signal.SIGTERM)
                deadline = time.monotonic() + grace_s
                while self.pid(service.name) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if self.pid(service.name):
                    os.killpg(pid, signal.SIGKILL)
                log(f"{service.name}: stopped")
            self._pid_file(service.name).unlink(missing_ok=True)

    def status(self) -> dict[str, str]:
        return {s.name: ("SERVING" if self._check(self.target(s.name)) else "NOT SERVING") if self.pid(s.name)
                else "stopped" for s in self.services}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "demo", "print"])
    parser.add_argument("--run-dir", type=Path, default=Path(os.environ.get("SYN_RUN_DIR", ROOT / "run")))
    parser.add_argument("--port-offset", type=int, default=int(os.environ.get("SYN_PORT_OFFSET", "0")))
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo", help="demo pictures")
    parser.add_argument("--keep", action="store_true", help="demo: leave the stack running afterwards")
    args = parser.parse_args(argv)
    stack = Stack(args.run_dir.resolve(), args.port_offset)
    if args.command == "up":
        stack.up()
    elif args.command == "down":
        stack.down()
    elif args.command == "status":
        print(json.dumps(stack.status(), indent=2))
    elif args.command == "print":
        print(json.dumps([s.__dict__ for s in stack.services], indent=2))
    else:
        from scripts.demo import run_demo

        started_here = not stack.pid(GATEWAY)
        stack.up()
        try:
            run_demo(stack.target(GATEWAY), args.out)
        finally:
            if started_here and not args.keep:
                stack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
