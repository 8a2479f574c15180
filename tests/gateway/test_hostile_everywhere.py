"""The hostile-input corpus (tests/hostile_inputs.py) against every RPC of every running service.

Bytes that are not protobuf go to every method of the four model services and of the gateway
(its own RPCs and the ones it forwards), unary and streaming; hostile images go to every image
field the gateway takes. Each must answer a deliberate status, never UNKNOWN or INTERNAL, and
the service must keep serving.
"""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2

from synesthesia.services import SERVICES
from synesthesia.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests import hostile_inputs
from tests.runtime.helpers import field_violations
from tests.servers import health_status

pytestmark = pytest.mark.slow


def _methods():
    for service in SERVICES.values():
        for method in service.descriptor().methods:
            yield service.name, method


def _send(channel: grpc.Channel, path: str, method, data: bytes):
    if method.client_streaming and method.server_streaming:
        return list(channel.stream_stream(path)(iter([data]), timeout=30))
    if method.client_streaming:
        return channel.stream_unary(path)(iter([data]), timeout=30)
    if method.server_streaming:
        return list(channel.unary_stream(path)(data, timeout=30))
    return channel.unary_unary(path)(data, timeout=30)


@pytest.mark.parametrize("name, method", [pytest.param(n, m, id=f"{n}.{m.name}") for n, m in _methods()])
def test_undecodable_bytes_are_invalid_argument_on_every_method(upstream_targets, gateway, name, method):
    # Each method directly on its own service, and (for the upstreams) forwarded through the gateway.
    targets = [gateway.target] if name == "gateway" else [upstream_targets[name], gateway.target]
    path = f"/{method.containing_service.full_name}/{method.name}"
    for target in targets:
        with grpc.insecure_channel(target) as channel:
            for label, data in hostile_inputs.GARBAGE_MESSAGES.items():
                with pytest.raises(grpc.RpcError) as caught:
                    _send(channel, path, method, data)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (target, label, caught.value.details())
                assert "request" in [f for f, _ in field_violations(caught.value)], caught.value.details()
        assert health_status(target) == health_pb2.HealthCheckResponse.SERVING


def test_hostile_images_on_every_gateway_image_field(gateway):
    requests = {
        "Describe": lambda image: gateway_pb2.DescribeRequest(image=image),
        "Translate": lambda image: gateway_pb2.TranslateRequest(image=image, model="day2night"),
        "Listen": lambda image: gateway_pb2.ListenRequest(
            image=image, audio=common_pb2.AudioClip(encoded=hostile_inputs.silent_file(1, 16_000, 1, "WAV"))),
    }
    with grpc.insecure_channel(gateway.target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        for rpc, build in requests.items():
            for label, (data, setting) in hostile_inputs.images_past_the_limits().items():
                with pytest.raises(grpc.RpcError) as caught:
                    getattr(stub, rpc)(build(common_pb2.Image(data=data)), timeout=60)
                assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (rpc, label)
                assert setting in caught.value.details() and "image.data" in caught.value.details()
            for label, data in hostile_inputs.broken_images().items():
                with pytest.raises(grpc.RpcError) as caught:
                    getattr(stub, rpc)(build(common_pb2.Image(data=data)), timeout=60)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (rpc, label, caught.value.details())
                assert "0x" not in caught.value.details() and "object at" not in caught.value.details()
    assert health_status(gateway.target) == health_pb2.HealthCheckResponse.SERVING


def test_long_user_input_is_echoed_as_a_short_prefix(gateway):
    with grpc.insecure_channel(gateway.target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        spec = "steps: [{name: a, call: " + "x" * 5000 + "}]"
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.RunPipeline(gateway_pb2.RunPipelineRequest(spec=spec), timeout=30))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "x" * 100 not in caught.value.details() and "5000 characters" in caught.value.details()
