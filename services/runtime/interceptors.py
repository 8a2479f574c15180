"""One interceptor for every RPC: request ids, auth, structured errors, metrics.

Handlers raise ServiceError (or anything else); this is the single place that
turns exceptions into gRPC statuses, so no servicer repeats try/except blocks.
"""

from __future__ import annotations

import contextvars
import hmac
import inspect
import logging
import time
import uuid

import grpc
from grpc_status import rpc_status

from . import metrics
from .errors import ServiceError

log = logging.getLogger(__name__)
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Probes and tooling must work without credentials.
_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _to_exception(exc: BaseException, method: str, request_id: str) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, ValueError):
        return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    log.exception("unhandled error in %s (request %s)", method, request_id, exc_info=exc)
    return ServiceError(
        grpc.StatusCode.INTERNAL, f"internal error in {method} (request id {request_id}): {type(exc).__name__}"
    )


class CallInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, auth_token: str = "") -> None:
        self._auth_token = auth_token

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        request_id = metadata.get("x-request-id") or uuid.uuid4().hex
        denied = self._auth_token and not method.startswith(_OPEN_PREFIXES) and not hmac.compare_digest(
            metadata.get("authorization", ""), f"Bearer {self._auth_token}"
        )

        async def fail(context, error: ServiceError, started: float):
            metrics.RPCS.labels(method, error.code.name).inc()
            metrics.RPC_SECONDS.labels(method).observe(time.perf_counter() - started)
            if error.code is grpc.StatusCode.INTERNAL or error.code is grpc.StatusCode.UNAUTHENTICATED:
                log.warning("%s -> %s: %s", method, error.code.name, error.message)
            await context.abort_with_status(rpc_status.to_status(error.to_status(request_id)))

        def begin(context):
            REQUEST_ID.set(request_id)
            metrics.IN_FLIGHT.inc()
            if denied:
                raise ServiceError(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token in `authorization`")
            return time.perf_counter()

        def succeed(context, started: float):
            context.set_trailing_metadata((("x-request-id", request_id),))
            metrics.RPCS.labels(method, "OK").inc()
            metrics.RPC_SECONDS.labels(method).observe(time.perf_counter() - started)

        def wrap_unary(behaviour):
            async def wrapped(request, context):
                started = time.perf_counter()
                try:
                    begin(context)
                    result = behaviour(request, context)
                    if inspect.isawaitable(result):
                        result = await result
                    succeed(context, started)
                    return result
                except Exception as exc:  # noqa: BLE001 - every error becomes a status
                    if _is_abort(exc):
                        raise
                    await fail(context, _to_exception(exc, method, request_id), started)
                finally:
                    metrics.IN_FLIGHT.dec()

            return wrapped

        def wrap_stream(behaviour):
            async def wrapped(request, context):
                started = time.perf_counter()
                try:
                    begin(context)
                    result = behaviour(request, context)
                    if inspect.isasyncgen(result):
                        async for response in result:
                            yield response
                    else:  # a handler that writes with `await context.write()`
                        await result
                    succeed(context, started)
                except Exception as exc:  # noqa: BLE001
                    if _is_abort(exc):
                        raise
                    await fail(context, _to_exception(exc, method, request_id), started)
                finally:
                    metrics.IN_FLIGHT.dec()

            return wrapped

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                wrap_unary(handler.unary_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                wrap_unary(handler.stream_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                wrap_stream(handler.unary_stream), handler.request_deserializer, handler.response_serializer
            )
        return grpc.stream_stream_rpc_method_handler(
            wrap_stream(handler.stream_stream), handler.request_deserializer, handler.response_serializer
        )


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises this internally; it already carries its status.
    return type(exc).__name__ == "AbortError" or isinstance(exc, grpc.aio.AbortError)
