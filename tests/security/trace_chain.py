"""A two-hop chain in one process with OpenTelemetry's in-memory exporter; prints the spans as JSON.

Run by test_tracing.py in a subprocess (the tracer provider is process-global): a
front service (the toy captioner behind a relay) calls a back service over a
channel with the runtime's client interceptors, as the gateway does, so the
spans show whether the W3C context crosses the hop.
"""

from __future__ import annotations

import asyncio
import json

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.runtime import ServiceHost, Settings, tracing
from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2
from tests.runtime.helpers import solid_png
from tests.runtime.toy_service import ToyCaptioner


class Relay(captioning_pb2_grpc.CaptioningServicer):
    """Caption by asking the back service, through an instrumented channel."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target, interceptors=tracing.client_interceptors())
        self.stub = captioning_pb2_grpc.CaptioningStub(self.channel)

    async def Caption(self, request, context):
        return await self.stub.Caption(request, timeout=30)


async def main() -> None:
    exporter = InMemorySpanExporter()
    tracing.setup("chain", "", exporter=exporter)
    settings = Settings(port=0)
    back = ServiceHost(settings, ToyCaptioner(settings), captioning_pb2_grpc.add_CaptioningServicer_to_server,
                       "synesthesia.v1.Captioning")
    await back.start()
    relay = Relay(f"127.0.0.1:{back.port}")
    front = ServiceHost(settings, relay, captioning_pb2_grpc.add_CaptioningServicer_to_server,
                        "synesthesia.v1.Captioning")
    await front.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{front.port}") as channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        # A caller's W3C trace context: the whole chain must join this trace.
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        await captioning_pb2_grpc.CaptioningStub(channel).Caption(
            captioning_pb2.CaptionRequest(image=common_pb2.Image(data=solid_png(5))),
            metadata=(("traceparent", parent),), timeout=30)
    await relay.channel.close()
    for host in (front, back):
        await host.server.stop(0)
    print(json.dumps([{
        "name": span.name, "kind": span.kind.name, "trace_id": format(span.context.trace_id, "032x"),
        "span_id": format(span.context.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
    } for span in exporter.get_finished_spans()]))


if __name__ == "__main__":
    asyncio.run(main())
