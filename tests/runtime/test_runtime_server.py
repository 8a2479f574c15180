"""The shared runtime, over real loopback servers (the toy servicer in toy_service.py)."""

from __future__ import annotations

import concurrent.futures
import signal
import time
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2
from tests.runtime.helpers import (TOY, caption, field_violations, in_flight, png_bytes, png_declaring, solid_png,
                                  wait_until)
from tests.servers import free_port, health_status

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def forward_calls(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        reply = captioning_pb2_grpc.CaptioningStub(channel).ListModels(captioning_pb2.ListCaptioningModelsRequest())
    return int(reply.models[0].metrics["forward_calls"])


def test_health_is_not_serving_until_warm_up_ends(service_process):
    server = service_process("toy", {"SYN_TOY_WARMUP_S": "4"}, module=TOY, wait=False)
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and SERVING not in seen:
        status = health_status(server.target, "synesthesia.v1.Captioning")
        if status is not None:
            seen.append(status)
        time.sleep(0.1)
    assert seen and seen[0] == NOT_SERVING, seen
    assert seen[-1] == SERVING
    assert health_status(server.target, "") == SERVING


def test_reflection_lists_the_service_and_health(shared_service):
    server = shared_service("toy", module=TOY)
    with grpc.insecure_channel(server.target) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "synesthesia.v1.Captioning" in services
    assert "grpc.health.v1.Health" in services


def test_corrupt_and_empty_images_name_the_field_and_server_keeps_serving(shared_service):
    server = shared_service("toy", module=TOY)
    for data in (b"", b"\x89PNG\r\n\x1a\nnot really a png", solid_png(9)[:40]):
        with pytest.raises(grpc.RpcError) as err:
            caption(server.target, data)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [f for f, _ in field_violations(err.value)] == ["image.data"]
        assert "image.data" in err.value.details()
    assert caption(server.target, solid_png(100)).caption == "mean 100 width 16"


def test_image_declaring_too_many_pixels_is_refused_before_decoding(shared_service):
    server = shared_service("toy", module=TOY)
    with pytest.raises(grpc.RpcError) as err:
        caption(server.target, png_declaring(100_000, 100_000))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert field_violations(err.value)[0][0] == "image.data"


def test_unknown_model_and_bad_option_get_their_own_status(shared_service):
    server = shared_service("toy", module=TOY)
    with pytest.raises(grpc.RpcError) as err:
        caption(server.target, solid_png(1), model="nope")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert field_violations(err.value)[0][0] == "options.model"
    with pytest.raises(grpc.RpcError) as err:
        caption(server.target, solid_png(1), beam_size=11)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(err.value)[0][0] == "options.beam_size"


def test_oversized_message_is_resource_exhausted(service_process):
    server = service_process("toy", {"SYN_MAX_MESSAGE_BYTES": "100000"}, module=TOY)
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)  # ~197 kB as PNG
    with pytest.raises(grpc.RpcError) as err:
        caption(server.target, png_bytes(noise))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "SYN_MAX_MESSAGE_BYTES" in err.value.details()  # the setting to change, not gRPC's internals
    assert caption(server.target, solid_png(7)).caption == "mean 7 width 16"


def test_deadline_exceeded_and_server_survives(service_process):
    server = service_process("toy", {"SYN_TOY_DELAY_MS": "1500"}, module=TOY)
    with pytest.raises(grpc.RpcError) as err:
        caption(server.target, solid_png(3), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert caption(server.target, solid_png(4)).caption == "mean 4 width 16"


def test_batcher_merges_concurrent_calls_and_never_mixes_responses(service_process):
    server = service_process(
        "toy", {"SYN_TOY_DELAY_MS": "200", "SYN_MAX_BATCH_WAIT_MS": "100", "SYN_MAX_BATCH_SIZE": "32"}, module=TOY
    )
    before = forward_calls(server.target)
    values = list(range(10, 250, 10))  # 24 distinct images
    with concurrent.futures.ThreadPoolExecutor(len(values)) as pool:
        replies = list(pool.map(lambda v: caption(server.target, solid_png(v, width=v % 7 + 8)), values))
    for value, reply in zip(values, replies):
        assert reply.caption == f"mean {value} width {value % 7 + 8}"
    passes = forward_calls(server.target) - before
    assert 1 <= passes <= len(values) // 3, passes


def test_sigterm_drains_in_flight_calls(service_process):
    metrics_port = free_port()
    server = service_process("toy", {"SYN_TOY_DELAY_MS": "1500", "SYN_MAX_BATCH_SIZE": "1",
                                     "SYN_METRICS_PORT": str(metrics_port)}, module=TOY)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(caption, server.target, solid_png(v), 60.0) for v in (11, 22, 33)]
        # SIGTERM only once the server holds all three calls (not after a guess at how long that takes).
        wait_until(lambda: in_flight(metrics_port) >= 3, what="three calls in flight")
        server.signal(signal.SIGTERM)
        wait_until(lambda: health_status(server.target) in (NOT_SERVING, None), 30, "NOT_SERVING after SIGTERM")
        results = [f.result() for f in futures]
    assert [r.caption for r in results] == [f"mean {v} width 16" for v in (11, 22, 33)]
    assert server.process.wait(30) == 0
    with pytest.raises(grpc.RpcError) as err:
        caption(server.target, solid_png(1), timeout=2)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_streaming_errors_are_structured_too(shared_service):
    server = shared_service("toy", module=TOY)
    with grpc.insecure_channel(server.target) as channel:
        stub = captioning_pb2_grpc.CaptioningStub(channel)
        words = [m.word.text for m in stub.StreamCaption(
            captioning_pb2.StreamCaptionRequest(image=common_pb2.Image(data=solid_png(50))), timeout=10)]
        assert words == ["mean", "50", "width", "16"]
        with pytest.raises(grpc.RpcError) as err:
            list(stub.StreamCaption(captioning_pb2.StreamCaptionRequest(image=common_pb2.Image(data=b"x")), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(err.value)[0][0] == "image.data"


def test_bearer_token_guards_rpcs_but_not_health(service_process):
    server = service_process("toy", {"SYN_AUTH_TOKEN": "s3cret"}, module=TOY)
    with pytest.raises(grpc.RpcError) as err:
        caption(server.target, solid_png(1))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(server.target) as channel:
        reply = captioning_pb2_grpc.CaptioningStub(channel).Caption(
            captioning_pb2.CaptionRequest(image=common_pb2.Image(data=solid_png(5))),
            metadata=(("authorization", "Bearer s3cret"),), timeout=10,
        )
    assert reply.caption == "mean 5 width 16"
    assert health_status(server.target) == SERVING


def nvml_gpu_present() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount() > 0
    except Exception:  # noqa: BLE001 - no driver or library: no GPU
        return False


def test_prometheus_metrics_count_rpcs_by_status(service_process):
    metrics_port = free_port()
    server = service_process("toy", {"SYN_METRICS_PORT": str(metrics_port)}, module=TOY)
    caption(server.target, solid_png(1))
    with pytest.raises(grpc.RpcError):
        caption(server.target, b"")
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    assert 'syn_rpcs_total{code="OK",method="/synesthesia.v1.Captioning/Caption",model="toy"} 1.0' in text
    # The empty image is refused before any model is chosen: no model label.
    assert 'syn_rpcs_total{code="INVALID_ARGUMENT",method="/synesthesia.v1.Captioning/Caption",model=""} 1.0' in text
    assert 'syn_batch_size_count{batcher="toy",model="toy"} 1.0' in text
    assert 'syn_queue_wait_seconds_count{batcher="toy",model="toy"} 1.0' in text
    assert 'syn_queue_depth{batcher="toy"} 0.0' in text
    # NVML metrics where a GPU is present, absent (not zero) where none is.
    assert ("syn_gpu_memory_used_bytes{" in text) == nvml_gpu_present()


def test_request_id_is_echoed_in_trailing_metadata(shared_service):
    server = shared_service("toy", module=TOY)
    with grpc.insecure_channel(server.target) as channel:
        _, call = captioning_pb2_grpc.CaptioningStub(channel).Caption.with_call(
            captioning_pb2.CaptionRequest(image=common_pb2.Image(data=solid_png(5))),
            metadata=(("x-request-id", "abc123"),), timeout=10,
        )
    assert ("x-request-id", "abc123") in tuple(call.trailing_metadata())
