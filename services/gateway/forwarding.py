"""The gateway also serves every upstream's own service, by forwarding: one published port reaches all.

`synesthesia.v1.Embedding/Search` sent to the gateway goes, as raw bytes (no
decoding and re-encoding), to the embedding upstream over the gateway's
balanced, retrying channel, with what is left of the caller's deadline; the
reply, or the upstream's status with its google.rpc details, comes back
unchanged. Unary and streaming methods alike (audio's StreamFeatures), listed
from each service's descriptor, so a new RPC is forwarded without code here.
"""

from __future__ import annotations

import grpc
from google.rpc import status_pb2
from grpc_status import rpc_status

from services.gateway.upstreams import Upstream, remaining
from services.runtime import tracing

# Metadata that belongs to this hop: the gateway authenticates its callers itself and sends its own
# token upstream (upstreams.py says why), the request id is re-sent by Upstream.metadata() (the
# caller's, or the one made up for it), and gRPC's own keys are set by the transport.
_HOP_KEYS = ("authorization", "x-request-id")
# With tracing on, the gateway's client span sends its own trace context; without, the caller's passes.
_TRACE_KEYS = ("traceparent", "tracestate", "baggage")
DEFAULT_TIMEOUT_S = 120.0


def _forwarded_metadata(context, upstream: Upstream) -> tuple[tuple[str, str | bytes], ...]:
    hop = _HOP_KEYS + (_TRACE_KEYS if tracing.enabled() else ())
    return tuple((key, value) for key, value in (context.invocation_metadata() or ())
                 if key not in hop and not key.startswith((":", "grpc-"))) + upstream.metadata()


def _timeout(context, streaming: bool) -> float | None:
    left = remaining(context)
    if left is not None:
        return left
    return None if streaming else DEFAULT_TIMEOUT_S


async def _relay_error(err: grpc.aio.AioRpcError, upstream: Upstream, method: str, context) -> None:
    """Abort with the upstream's status: its own details when it sent any, else one naming the upstream."""
    status = rpc_status.from_call(err)
    if status is None:  # a transport failure (unreachable, deadline): say which hop it was
        status = status_pb2.Status(code=err.code().value[0], message=(
            f"upstream {upstream.name}.{method} at {upstream.target} failed: {err.code().name}: {err.details()}"))
    await context.abort_with_status(rpc_status.to_status(status))


def _handler(upstream: Upstream, method) -> grpc.RpcMethodHandler:
    path = f"/{method.containing_service.full_name}/{method.name}"
    name = method.name
    channel = upstream.channel

    if not method.client_streaming and not method.server_streaming:
        forward = channel.unary_unary(path)

        async def unary_unary(request: bytes, context):
            try:
                return await forward(request, timeout=_timeout(context, False),
                                     metadata=_forwarded_metadata(context, upstream))
            except grpc.aio.AioRpcError as err:
                await _relay_error(err, upstream, name, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary)

    if method.client_streaming and not method.server_streaming:
        forward = channel.stream_unary(path)

        async def stream_unary(requests, context):
            try:
                return await forward(requests, timeout=_timeout(context, True),
                                     metadata=_forwarded_metadata(context, upstream))
            except grpc.aio.AioRpcError as err:
                await _relay_error(err, upstream, name, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary)

    forward = channel.stream_stream(path) if method.client_streaming else channel.unary_stream(path)

    async def streaming(request, context):
        try:
            async for reply in forward(request, timeout=_timeout(context, True),
                                       metadata=_forwarded_metadata(context, upstream)):
                yield reply
        except grpc.aio.AioRpcError as err:
            await _relay_error(err, upstream, name, context)

    if method.client_streaming:
        return grpc.stream_stream_rpc_method_handler(streaming)
    return grpc.unary_stream_rpc_method_handler(streaming)


def forwarding_handlers(upstreams: dict[str, Upstream]) -> list[grpc.GenericRpcHandler]:
    """One generic handler per upstream service, forwarding each of its methods."""
    handlers = []
    for upstream in upstreams.values():
        descriptor = upstream.service.descriptor()
        methods = {method.name: _handler(upstream, method) for method in descriptor.methods}
        handlers.append(grpc.method_handlers_generic_handler(descriptor.full_name, methods))
    return handlers
