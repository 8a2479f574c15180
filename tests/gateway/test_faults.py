"""The gateway under faults: upstreams that die and come back, later steps that fail, bad pipelines.

Upstreams here are the toy captioner (tests/runtime/toy_service.py) where a real model is not
needed, and the shared real services where the result must be a real image.
"""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.pictures import png_bytes
from synesthesia.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests.conftest import gateway_env
from tests.runtime.helpers import solid_png
from tests.servers import ServiceProcess, free_port, health_status

TOY = "tests.runtime.toy_service"
SERVING = health_pb2.HealthCheckResponse.SERVING


def describe(target: str, timeout: float = 10.0) -> gateway_pb2.DescribeResponse:
    with grpc.insecure_channel(target) as channel:
        return gateway_pb2_grpc.GatewayStub(channel).Describe(
            gateway_pb2.DescribeRequest(image=common_pb2.Image(data=solid_png(40))), timeout=timeout)


@pytest.mark.slow
def test_a_restarted_upstream_is_used_again_within_seconds(service_process, tmp_path):
    toy_port = free_port()
    toy = service_process("toy", module=TOY, port=toy_port)
    dead = {name: f"127.0.0.1:{free_port()}" for name in ("generation", "audio", "embedding")}
    gw = service_process("gateway", gateway_env(dict(dead, captioning=toy.target)))
    assert describe(gw.target).caption.caption == "mean 40 width 16"
    toy.kill()
    with pytest.raises(grpc.RpcError) as err:
        describe(gw.target)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # Long enough for gRPC's default reconnect backoff (1 s x 1.6^n, up to 120 s) to reach ~25 s
    # between attempts: with it, the gateway would keep failing for many seconds after the restart.
    time.sleep(20)
    again = ServiceProcess(TOY, {}, tmp_path, toy_port).start()
    try:
        restarted = time.monotonic()
        while True:
            try:
                assert describe(gw.target).caption.caption == "mean 40 width 16"
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
                # Generous for a loaded machine; the backoff cap (1 s) and the health poll make it ~1-2 s.
                assert time.monotonic() - restarted < 10, "the gateway did not reconnect to the restarted upstream"
                time.sleep(0.1)
    finally:
        again.stop()


@pytest.mark.slow
def test_imagine_and_translate_return_what_was_generated_when_captioning_fails(service_process,
                                                                               upstream_targets):
    targets = dict(upstream_targets, captioning=f"127.0.0.1:{free_port()}")  # nothing listens there
    gw = service_process("gateway", gateway_env(targets))
    assert health_status(gw.target) == SERVING  # three of four upstreams serve
    with grpc.insecure_channel(gw.target, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        imagined = stub.Imagine(gateway_pb2.ImagineRequest(prompt="a large red circle", image_count=2, seed=3),
                                timeout=120)
        assert len(imagined.images) == 2 and all(i.image.data.startswith(b"\x89PNG") for i in imagined.images)
        assert all(i.caption == "" for i in imagined.images)
        assert any(-1 <= i.prompt_agreement <= 1 and i.prompt_agreement != 0 for i in imagined.images)
        assert len(imagined.warnings) == 1 and "captioning" in imagined.warnings[0], imagined.warnings
        scene = render_scene(EVAL_SEEDS[5])
        translated = stub.Translate(gateway_pb2.TranslateRequest(
            image=common_pb2.Image(data=png_bytes(scene.image)), model="day2night" if scene.domain == "day"
            else "night2day"), timeout=120)
        assert translated.image.data.startswith(b"\x89PNG") and translated.caption == ""
        assert len(translated.warnings) == 1 and "UNAVAILABLE" in translated.warnings[0], translated.warnings
        # A failure of the first step is still the call's failure.
        with pytest.raises(grpc.RpcError) as err:
            stub.Translate(gateway_pb2.TranslateRequest(image=common_pb2.Image(data=png_bytes(scene.image)),
                                                        model="no-such-model"), timeout=60)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
