"""Shared fixtures: real service processes on loopback ports.

- `service_process(name, env=None, module=None)`: a fresh process for this test,
  stopped afterwards. Use it when the test kills, restarts or reconfigures it.
- `upstream_targets` / `gateway`: the four model services and a gateway in front of them.
- `shared_service(name, env=None)`: one process per (name, env) for the whole
  session, for read-only tests; model loading is paid once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from synesthesia.services import UPSTREAM_NAMES
from tests.servers import ServiceProcess, free_port


# The services the tests start run their models in the service process unless a test says otherwise:
# the default (SYN_MODEL_PROCESS=auto) starts a worker process per model on a machine with two CPUs,
# seconds and about 360 MB each, for each of the hundreds of services the suite starts (session-shared
# ones stay up). tests/runtime/test_model_process.py runs the workers and auto's choice explicitly;
# exporting SYN_MODEL_PROCESS=true runs the whole suite with workers.
os.environ.setdefault("SYN_MODEL_PROCESS", "false")


def _module(name: str, module: str | None) -> str:
    return module or f"services.{name}"


@pytest.fixture
def service_process(tmp_path):
    started: list[ServiceProcess] = []

    def start(name: str, env: dict | None = None, module: str | None = None, wait: bool = True,
              port: int = 0) -> ServiceProcess:
        proc = ServiceProcess(_module(name, module), dict(env or {}), tmp_path, port)
        started.append(proc)
        return proc.start(wait=wait)

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def shared_service(tmp_path_factory):
    cache: dict[tuple, ServiceProcess] = {}

    def get(name: str, env: dict | None = None, module: str | None = None) -> ServiceProcess:
        key = (_module(name, module), tuple(sorted((env or {}).items())))
        proc = cache.get(key)
        if proc is None or proc.process.poll() is not None:
            proc = ServiceProcess(key[0], dict(env or {}), tmp_path_factory.mktemp(name)).start()
            cache[key] = proc
        return proc

    yield get
    for proc in cache.values():
        proc.stop()


# A gateway in front of real upstream services, shared by the gateway and CLI tests.
ROOT = Path(__file__).resolve().parents[1]
UPSTREAMS = UPSTREAM_NAMES


def require_upstreams() -> None:
    missing = [n for n in UPSTREAMS if not (ROOT / "services" / n / "servicer.py").exists()]
    if missing:
        pytest.skip(f"upstream services not in this checkout yet: {', '.join(missing)}")


@pytest.fixture(scope="session")
def upstream_targets(shared_service, tmp_path_factory):
    require_upstreams()
    index_dir = tmp_path_factory.mktemp("gateway-index")
    env = {"embedding": {"SYN_EMBEDDING_INDEX_DIR": str(index_dir)}}
    return {name: shared_service(name, env.get(name)).target for name in UPSTREAMS}


def gateway_env(targets: dict[str, str]) -> dict[str, str]:
    return {f"SYN_{name.upper()}_TARGET": target for name, target in targets.items()} | {
        "SYN_GATEWAY_HEALTH_INTERVAL_S": "0.5"}


@pytest.fixture(scope="session")
def gateway(shared_service, upstream_targets):
    """The gateway, with its HTTP/JSON port (`http_url(gateway)`) and its nginx front (`front_target`) on."""
    return shared_service("gateway", gateway_env(upstream_targets) | {
        "SYN_HTTP_PORT": str(free_port()), "SYN_GATEWAY_FRONT_PORT": str(free_port())})


def http_url(gateway: ServiceProcess) -> str:
    return f"http://127.0.0.1:{gateway.env['SYN_HTTP_PORT']}"


def front_target(gateway: ServiceProcess) -> str:
    """The gateway's nginx front (SYN_GATEWAY_FRONT_PORT)."""
    return f"127.0.0.1:{gateway.env['SYN_GATEWAY_FRONT_PORT']}"
