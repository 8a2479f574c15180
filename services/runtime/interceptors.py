"""One interceptor for every RPC: request ids, auth, structured errors, metrics, access log.

Handlers raise ServiceError (or anything else); this is the single place that
turns exceptions into gRPC statuses, so no servicer repeats try/except blocks.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import time
import uuid

import grpc
from grpc_status import rpc_status

from . import logs, metrics, tracing
from .calls import CURRENT, REQUEST_ID, Call
from .errors import ServiceError
from .settings import Settings

log = logging.getLogger(__name__)

# Probes must work without credentials (and, for Kubernetes' gRPC probe, without a way to send any).
_HEALTH_PREFIX = "/grpc.health.v1.Health/"
_REFLECTION_PREFIX = "/grpc.reflection."


def _to_exception(exc: BaseException, method: str, request_id: str) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, ValueError):
        return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    log.exception("unhandled error in %s (request %s)", method, request_id, exc_info=exc)
    return ServiceError(
        grpc.StatusCode.INTERNAL, f"internal error in {method} (request id {request_id}): {type(exc).__name__}"
    )


def bearer_token(value: str) -> str | None:
    """The token of an `authorization: Bearer <token>` value; the scheme is case-insensitive (RFC 7235)."""
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class CallInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or Settings()
        self._expected = settings.auth_token.encode()
        self._open_prefixes = (_HEALTH_PREFIX,) if settings.reflection_needs_token else (
            _HEALTH_PREFIX, _REFLECTION_PREFIX)
        self._log_requests = settings.log_requests

    def _authorised(self, method: str, metadata: dict[str, str]) -> bool:
        if not self._expected or method.startswith(self._open_prefixes):
            return True
        token = bearer_token(metadata.get("authorization", ""))
        # compare_digest on equal-type bytes: constant time whatever the token holds.
        return token is not None and hmac.compare_digest(token.encode(), self._expected)

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        request_id = metadata.get("x-request-id") or uuid.uuid4().hex
        denied = not self._authorised(method, metadata)
        log_requests = self._log_requests

        def finish(call: Call, code: str, started: float) -> None:
            seconds = time.perf_counter() - started
            metrics.RPCS.labels(method, code, call.model).inc()
            metrics.RPC_SECONDS.labels(method, call.model).observe(seconds)
            if log_requests:
                logs.log_call(call, code, seconds, tracing.current_trace_id())

        async def fail(context, call: Call, error: ServiceError, started: float):
            finish(call, error.code.name, started)
            if error.code is grpc.StatusCode.INTERNAL or error.code is grpc.StatusCode.UNAUTHENTICATED:
                log.warning("%s -> %s: %s (request %s, peer %s)", method, error.code.name, error.message,
                            request_id, call.peer)
            await context.abort_with_status(rpc_status.to_status(error.to_status(request_id)))

        def begin(context) -> Call:
            call = Call(request_id=request_id, method=method, peer=context.peer() or "")
            REQUEST_ID.set(request_id)
            CURRENT.set(call)
            metrics.IN_FLIGHT.inc()
            return call

        def check() -> None:
            if denied:
                raise ServiceError(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token in `authorization`")

        def succeed(context, call: Call, started: float):
            context.set_trailing_metadata((("x-request-id", request_id),))
            finish(call, "OK", started)

        def cancelled(context, call: Call, started: float) -> None:
            # The caller went away (cancel, or its deadline passed): no status reaches it, but count it.
            left = context.time_remaining()
            code = "DEADLINE_EXCEEDED" if left is not None and left <= 0 else "CANCELLED"
            metrics.CANCELLED.labels(method).inc()
            finish(call, code, started)

        def wrap_unary(behaviour):
            async def wrapped(request, context):
                started = time.perf_counter()
                call = begin(context)
                try:
                    check()
                    result = behaviour(request, context)
                    if inspect.isawaitable(result):
                        result = await result
                    succeed(context, call, started)
                    return result
                except asyncio.CancelledError:
                    cancelled(context, call, started)
                    raise
                except Exception as exc:  # noqa: BLE001 - every error becomes a status
                    if _is_abort(exc):
                        raise
                    await fail(context, call, _to_exception(exc, method, request_id), started)
                finally:
                    metrics.IN_FLIGHT.dec()

            return wrapped

        def wrap_stream(behaviour):
            async def wrapped(request, context):
                started = time.perf_counter()
                call = begin(context)
                try:
                    check()
                    result = behaviour(request, context)
                    if inspect.isasyncgen(result):
                        async for response in result:
                            yield response
                    else:  # a handler that writes with `await context.write()`
                        await result
                    succeed(context, call, started)
                except asyncio.CancelledError:
                    cancelled(context, call, started)
                    raise
                except Exception as exc:  # noqa: BLE001
                    if _is_abort(exc):
                        raise
                    await fail(context, call, _to_exception(exc, method, request_id), started)
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
