"""What the runtime guarantees before a handler sees a call: undecodable bytes, size and concurrency
limits, deadlines and cancellation, and status text without internals (real toy server on loopback)."""

from __future__ import annotations

import concurrent.futures

import grpc
import pytest

from services.runtime import quoted, scrub
from services.runtime.interceptors import _to_exception
from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2
from tests.runtime.helpers import TOY, caption, field_violations, in_flight, metrics_text, solid_png, wait_until
from tests.servers import free_port, health_status

CAPTION = "/synesthesia.v1.Captioning/Caption"
STREAM_CAPTION = "/synesthesia.v1.Captioning/StreamCaption"
# Bytes that are not a protobuf message: field 15 with the reserved wire type 7.
GARBAGE = [b"\x7f\xff\xff\xff", bytes(range(256)) * 3, b"\x0a\xff\xff\xff\xff\x0f"]


def raw_unary(target: str, method: str, data: bytes, timeout: float = 10.0):
    with grpc.insecure_channel(target) as channel:
        return channel.unary_unary(method)(data, timeout=timeout)


def raw_stream(target: str, method: str, data: bytes, timeout: float = 10.0):
    with grpc.insecure_channel(target) as channel:
        return list(channel.unary_stream(method)(data, timeout=timeout))


@pytest.mark.parametrize("data", GARBAGE, ids=["wire-type-7", "byte-ramp", "truncated-field"])
@pytest.mark.parametrize("method", [CAPTION, STREAM_CAPTION])
def test_undecodable_request_is_invalid_argument_with_one_log_line(service_process, method, data):
    server = service_process("toy", module=TOY)
    call = raw_stream if method == STREAM_CAPTION else raw_unary
    with pytest.raises(grpc.RpcError) as err:
        call(server.target, method, data)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "request" in [f for f, _ in field_violations(err.value)]
    assert "not a valid" in err.value.details()
    assert caption(server.target, solid_png(8), timeout=30.0).caption == "mean 8 width 16"
    server.stop()
    log = server.log_path.read_text()
    assert log.count("undecodable") == 1, log
    assert "Traceback" not in log, log


def test_concurrency_limit_refuses_calls_by_name_but_never_health(service_process):
    metrics_port = free_port()
    server = service_process("toy", {"SYN_MAX_CONCURRENT_RPCS": "2", "SYN_TOY_DELAY_MS": "2000",
                                     "SYN_MAX_BATCH_SIZE": "1", "SYN_METRICS_PORT": str(metrics_port)},
                             module=TOY)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        busy = [pool.submit(caption, server.target, solid_png(v), 60.0) for v in (1, 2)]
        wait_until(lambda: in_flight(metrics_port) >= 2, what="two calls in flight")
        # The server is full: a third call is refused by name, health and reflection still answer.
        with pytest.raises(grpc.RpcError) as err:
            caption(server.target, solid_png(3), timeout=30.0)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "SYN_MAX_CONCURRENT_RPCS" in err.value.details()
        checks = [health_status(server.target, name) for name in ("", "synesthesia.v1.Captioning") * 10]
        assert all(status == 1 for status in checks), checks  # SERVING, every time
        assert [f.result().caption for f in busy] == ["mean 1 width 16", "mean 2 width 16"]
    # Once they finish, new calls are admitted again.
    assert caption(server.target, solid_png(4), timeout=30.0).caption == "mean 4 width 16"


def test_cancelled_and_deadline_exceeded_calls_are_counted_and_start_no_model_work(service_process):
    metrics_port = free_port()
    server = service_process("toy", {"SYN_TOY_DELAY_MS": "4000", "SYN_MAX_BATCH_SIZE": "1",
                                     "SYN_METRICS_PORT": str(metrics_port)}, module=TOY)

    def counts() -> str:
        return "the server's counts: " + "; ".join(line for line in metrics_text(metrics_port).splitlines()
                                                    if line.startswith(("syn_rpcs_total", "syn_rpcs_in_flight")))

    def counted(code: str) -> float:
        prefix = f'syn_rpcs_total{{code="{code}",method="{CAPTION}"'  # then the model label, if any
        return sum(float(line.split()[-1]) for line in metrics_text(metrics_port).splitlines()
                   if line.startswith(prefix))

    with grpc.insecure_channel(server.target) as channel:
        stub = captioning_pb2_grpc.CaptioningStub(channel)
        request = captioning_pb2.CaptionRequest(image=common_pb2.Image(data=solid_png(5)))
        first = stub.Caption.future(request, timeout=60)
        wait_until(lambda: in_flight(metrics_port) >= 1, what="the first call reaching the server")
        # Queued behind the first pass (4 s), this call's deadline passes before the model is free.
        with pytest.raises(grpc.RpcError) as err:
            stub.Caption(request, timeout=1.5)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The server lets go of that call a moment after the client does; until it has, it still counts
        # in syn_rpcs_in_flight, and the wait below could see it instead of the call to cancel.
        wait_until(lambda: counted("DEADLINE_EXCEEDED") == 1, 30, counts)
        cancelled = stub.Caption.future(request, timeout=60)
        wait_until(lambda: in_flight(metrics_port) >= 2, what="the call to cancel reaching the server")
        cancelled.cancel()
        wait_until(lambda: counted("CANCELLED") == 1, 30, counts)
        assert first.result().caption == "mean 5 width 16"
    with grpc.insecure_channel(server.target) as channel:
        models = captioning_pb2_grpc.CaptioningStub(channel).ListModels(
            captioning_pb2.ListCaptioningModelsRequest(), timeout=10)
    assert models.models[0].metrics["items_processed"] == 1  # only the first call reached the model
    assert counted("DEADLINE_EXCEEDED") == 1 and counted("CANCELLED") == 1


def test_status_text_carries_no_reprs_addresses_or_class_names():
    text = scrub("not a readable file (Error opening <_io.BytesIO object at 0x7f3a2c1d9e40>: bad) 0x7f3a2c1d9e40")
    assert "0x7f" not in text and "BytesIO" not in text
    assert len(scrub("x" * 100_000)) <= 1024
    assert quoted("a" * 5000).startswith("'" + "a" * 48 + "'") and "5000 characters" in quoted("a" * 5000)
    assert quoted("short") == "'short'"
    error = _to_exception(KeyError("secret internals"), "/x.Y/Z", "req1")
    assert error.code == grpc.StatusCode.INTERNAL
    assert "KeyError" not in error.message and "secret" not in error.message and "req1" in error.message
