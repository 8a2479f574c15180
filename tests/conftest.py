"""Shared fixtures: real service processes on loopback ports.

- `service_process(name, env=None, module=None)`: a fresh process for this test,
  stopped afterwards. Use it when the test kills, restarts or reconfigures it.
- `shared_service(name, env=None)`: one process per (name, env) for the whole
  session, for read-only tests; model loading is paid once.
"""

from __future__ import annotations

import pytest

from tests.servers import ServiceProcess


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
