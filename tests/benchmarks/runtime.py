"""The runtime alone: the toy servicer (tests/runtime/toy_service.py) does no model work, so this
measures the cost of the server, interceptor, image decoding and batcher per call."""

from __future__ import annotations

from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2
from tests.benchmarks.harness import Scenario
from tests.runtime.helpers import solid_png

IMAGES = [solid_png(v, 64, 64) for v in range(256)]


def _make_call(channel):
    stub = captioning_pb2_grpc.CaptioningStub(channel)

    def call(i: int):
        return stub.Caption(captioning_pb2.CaptionRequest(image=common_pb2.Image(data=IMAGES[i % 256])), timeout=30)

    return call


SCENARIOS = [
    Scenario(
        name="runtime.Caption (toy model)",
        module="tests.runtime.toy_service",
        make_call=_make_call,
        unit="calls",
        min_calls=200,
        calls_per_worker=20,
    )
]
