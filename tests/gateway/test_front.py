"""The gateway's nginx front (SYN_GATEWAY_FRONT_PORT): what it adds to forwarding, and its life as a child.

The forwarding tests (test_forwarding.py) run through the front too; these cover the rest: request
ids, an unreachable upstream named, a front that dies and comes back, the drain, and refused settings.
TLS, mutual TLS and tokens through the front: tests/security/test_secure_stack.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from types import SimpleNamespace

import grpc
import psutil
import pytest

from services.gateway.front import NginxFront
from services.gateway.settings import GatewaySettings
from services.runtime import Settings
from synesthesia.v1 import embedding_pb2, embedding_pb2_grpc, gateway_pb2, gateway_pb2_grpc
from tests.conftest import front_target, gateway_env
from tests.servers import ServiceProcess, free_port

pytestmark = pytest.mark.slow


def _front_groups(gateway: ServiceProcess) -> set[int]:
    """The nginx master the gateway started (its process group holds the workers)."""
    out = subprocess.run(["pgrep", "-P", str(gateway.process.pid), "nginx"], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def test_request_ids_go_upstream_and_come_back(gateway):
    stub = embedding_pb2_grpc.EmbeddingStub(grpc.insecure_channel(front_target(gateway)))
    _, call = stub.ListModels.with_call(embedding_pb2.ListEmbeddingModelsRequest(),
                                        metadata=(("x-request-id", "front-given-1"),), timeout=30)
    assert dict(call.trailing_metadata())["x-request-id"] == "front-given-1"
    _, call = stub.ListModels.with_call(embedding_pb2.ListEmbeddingModelsRequest(), timeout=30)
    made_up = dict(call.trailing_metadata())["x-request-id"]
    assert len(made_up) == 32 and int(made_up, 16) >= 0  # nginx's $request_id, seen by the upstream


def test_unreachable_upstream_is_unavailable_by_name_and_the_rest_still_works(service_process, upstream_targets):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    front = free_port()
    gw = service_process("gateway", gateway_env(dict(upstream_targets, embedding=dead))
                         | {"SYN_GATEWAY_FRONT_PORT": str(front)})
    with grpc.insecure_channel(f"127.0.0.1:{front}") as channel:
        with pytest.raises(grpc.RpcError) as err:
            embedding_pb2_grpc.EmbeddingStub(channel).Search(
                embedding_pb2.SearchRequest(collection="x", text="a red circle"), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert f"upstream embedding at {dead}" in err.value.details()
        assert "SYN_EMBEDDING_TARGET" in err.value.details()
        reply = gateway_pb2_grpc.GatewayStub(channel).CheckUpstreams(gateway_pb2.CheckUpstreamsRequest(), timeout=30)
    assert {u.name: u.state for u in reply.upstreams}["audio"] == gateway_pb2.UPSTREAM_STATE_SERVING
    assert gw.process.poll() is None


def test_a_killed_front_is_started_again_and_the_drain_stops_it(service_process, upstream_targets):
    front = free_port()
    gw = service_process("gateway", gateway_env(upstream_targets) | {"SYN_GATEWAY_FRONT_PORT": str(front)})
    request = embedding_pb2.ListEmbeddingModelsRequest()
    with grpc.insecure_channel(f"127.0.0.1:{front}") as channel:
        assert embedding_pb2_grpc.EmbeddingStub(channel).ListModels(request, timeout=30).models
    (master,) = _front_groups(gw)
    os.kill(master, signal.SIGKILL)  # the master alone: its worker would keep the port if left
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _front_groups(gw) in (set(), {master}):
        time.sleep(0.2)
    (again,) = _front_groups(gw)
    assert again != master
    with grpc.insecure_channel(f"127.0.0.1:{front}") as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        assert embedding_pb2_grpc.EmbeddingStub(channel).ListModels(request, timeout=30).models
    gw.process.send_signal(signal.SIGTERM)
    assert gw.process.wait(timeout=60) == 0
    time.sleep(0.5)
    for group in (master, again):  # the killed master's worker, and the new nginx: gone with the gateway
        with pytest.raises(ProcessLookupError):
            os.killpg(group, 0)


@pytest.mark.parametrize("env, named", [
    ({"SYN_GATEWAY_FRONT_NGINX": "no-such-nginx"}, "SYN_GATEWAY_FRONT_NGINX"),
    ({"SYN_AUTH_TOKEN": "has space"}, "SYN_AUTH_TOKEN"),
    ({"SYN_GATEWAY_FRONT_PORT": "-1"}, "SYN_GATEWAY_FRONT_PORT"),
])
def test_settings_the_front_cannot_use_stop_start_up_by_name(upstream_targets, tmp_path, env, named):
    port = free_port()
    full = gateway_env(upstream_targets) | {"SYN_GATEWAY_FRONT_PORT": str(free_port())} | env
    proc = ServiceProcess("services.gateway", full, tmp_path, port).start(wait=False)
    assert proc.process.wait(timeout=60) != 0
    assert named in proc.log_tail()


def test_a_message_over_the_limit_reaches_the_upstream_and_is_refused_by_name(gateway):
    """nginx passes any size (client_max_body_size 0): the upstream refuses by SYN_MAX_MESSAGE_BYTES."""
    big = "a red circle " * (17 * 1024 * 1024 // 13)  # over the 16 MiB default, under gRPC's own 2x cap
    with grpc.insecure_channel(front_target(gateway)) as channel, pytest.raises(grpc.RpcError) as err:
        embedding_pb2_grpc.EmbeddingStub(channel).Search(
            embedding_pb2.SearchRequest(collection="x", text=big), timeout=60)
    assert err.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)
    assert "SYN_MAX_MESSAGE_BYTES" in err.value.details()


def test_the_front_reloads_nginx_when_an_upstream_name_resolves_elsewhere(monkeypatch):
    """nginx resolves names only when it loads its configuration: the front resolves them again and
    reloads nginx (new worker processes) when a replica's address changed, as after a compose restart."""
    monkeypatch.setenv("SYN_EMBEDDING_TARGET", "localhost:50954")
    settings = Settings.from_env(host="127.0.0.1", port=free_port())
    front = NginxFront(SimpleNamespace(settings=settings, port=settings.port),
                       GatewaySettings(front_port=free_port(), health_interval_s=0.05))
    assert front._names == ["localhost:50954"]
    answers = iter([{"localhost:50954": frozenset({"127.0.0.1"})}] * 2 + [{"localhost:50954": frozenset({"::1"})}] * 50)

    async def resolved():
        return next(answers)

    front._addresses = resolved

    def workers() -> set[int]:
        return {child.pid for child in psutil.Process(front.process.pid).children()}

    async def scenario() -> tuple[set[int], set[int]]:
        await front.start()
        try:
            await asyncio.sleep(0.3)
            first = workers()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and workers() & first:
                await asyncio.sleep(0.1)
            return first, workers()
        finally:
            await front.stop(1.0)

    before, after = asyncio.run(scenario())
    assert before and after and not before & after
