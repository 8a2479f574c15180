"""One interceptor for every RPC: request ids, auth, limits, structured errors, metrics, access log.

Handlers raise ServiceError (or anything else); this is the single place that
turns exceptions into gRPC statuses, so no servicer repeats try/except blocks.

It also owns what must hold for every call before a handler sees it:
- request bytes that do not parse as the method's message answer
  INVALID_ARGUMENT with one log line (gRPC alone would answer UNKNOWN or
  INTERNAL with a traceback), unary and streaming alike; a message above
  SYN_MAX_MESSAGE_BYTES answers RESOURCE_EXHAUSTED naming the setting;
- SYN_MAX_CONCURRENT_RPCS is enforced here rather than by grpc's
  `maximum_concurrent_rpcs`, so health checks and reflection are never refused
  by it: an orchestrator must not restart a busy, working server;
- a call that arrives with its deadline already spent does no work, and the
  call's deadline and cancellation are recorded (calls.Call) for the stages
  that check them;
- cancelled and deadline-exceeded calls are counted like every other status.
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
from .errors import ServiceError, resource_exhausted
from .settings import Settings

log = logging.getLogger(__name__)

# Probes must work without credentials (and, for Kubernetes' gRPC probe, without a way to send any).
_HEALTH_PREFIX = "/grpc.health.v1.Health/"
_REFLECTION_PREFIX = "/grpc.reflection."
# The orchestrator's deadline timer may fire a little before our clock reaches the deadline we derived.
_DEADLINE_SLACK_S = 0.1


class _Unreadable:
    """Stands in for a request message that could not be read; the handler wrapper reports it."""

    def __init__(self, error: ServiceError, log_line: str) -> None:
        self.error = error
        self.log_line = log_line


def _to_exception(exc: BaseException, method: str, request_id: str) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, ValueError):
        return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    log.exception("unhandled error in %s (request %s)", method, request_id, exc_info=exc)
    # The class name and text stay in the log: they describe our code, not the caller's request.
    return ServiceError(grpc.StatusCode.INTERNAL, f"internal error in {method} (request id {request_id})")


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
        self._max_concurrent = settings.max_concurrent_rpcs
        self._max_message_bytes = settings.max_message_bytes
        self._active = 0  # limited calls being served now (the event loop is single-threaded)

    def _reader(self, deserialize, method: str):
        """The method's deserializer, returning an _Unreadable instead of raising."""
        limit = self._max_message_bytes

        def read(data: bytes):
            if limit and len(data) > limit:
                return _Unreadable(
                    resource_exhausted("request", f"the request is {len(data)} bytes; the limit is {limit} "
                                                  "(SYN_MAX_MESSAGE_BYTES)"),
                    f"{method}: refused a {len(data)}-byte request (SYN_MAX_MESSAGE_BYTES={limit})")
            if deserialize is None:  # raw bytes (the gateway's forwarding handlers)
                return data
            try:
                return deserialize(data)
            except Exception as exc:  # noqa: BLE001 - any parse failure is the caller's bytes
                return _Unreadable(
                    ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                                 f"the request is not a valid {method.rsplit('/', 1)[-1]} request message "
                                 f"({len(data)} bytes that do not parse as protobuf)",
                                 [("request", "not a valid protobuf message for this method")]),
                    f"{method}: undecodable {len(data)}-byte request ({type(exc).__name__})")

        return read

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
        limited = bool(self._max_concurrent) and not method.startswith((_HEALTH_PREFIX, _REFLECTION_PREFIX))
        interceptor = self

        def finish(call: Call, code: str, started: float) -> None:
            seconds = time.perf_counter() - started
            metrics.record_rpc(method, code, call.model, seconds)
            if log_requests:
                logs.log_call(call, code, seconds, tracing.current_trace_id())

        async def fail(context, call: Call, error: ServiceError, started: float):
            finish(call, error.code.name, started)
            if error.code is grpc.StatusCode.INTERNAL or error.code is grpc.StatusCode.UNAUTHENTICATED:
                log.warning("%s -> %s: %s (request %s, peer %s)", method, error.code.name, error.message,
                            request_id, call.peer)
            await context.abort_with_status(rpc_status.to_status(error.to_status(request_id)))

        def begin(context) -> Call:
            call = Call(request_id=request_id, method=method, peer=context.peer() or "").watch(context)
            REQUEST_ID.set(request_id)
            CURRENT.set(call)
            metrics.IN_FLIGHT.inc()
            return call

        def check(call: Call, request) -> None:
            """Admit the call or raise why not (`request`: None for a request stream)."""
            if denied:
                raise ServiceError(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token in `authorization`")
            if isinstance(request, _Unreadable):
                log.warning("%s (request %s, peer %s)", request.log_line, request_id, call.peer)
                raise request.error
            if limited:
                if interceptor._active >= interceptor._max_concurrent:
                    raise ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                       f"the server is already serving {interceptor._active} calls, its limit "
                                       "(SYN_MAX_CONCURRENT_RPCS); retry with backoff")
                interceptor._active += 1
                call.admitted = True
            if call.expired():
                raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the call started")

        def end(call: Call) -> None:
            metrics.IN_FLIGHT.dec()
            if call.admitted:
                interceptor._active -= 1

        async def checked(requests, call: Call):
            async for message in requests:
                if isinstance(message, _Unreadable):
                    log.warning("%s (request %s, peer %s)", message.log_line, request_id, call.peer)
                    raise message.error
                yield message

        def succeed(context, call: Call, started: float):
            context.set_trailing_metadata((("x-request-id", request_id),))
            finish(call, "OK", started)

        def cancelled(context, call: Call, started: float) -> None:
            # The caller went away (cancel, or its deadline passed): no status reaches it, but count it.
            code = "DEADLINE_EXCEEDED" if call.expired(_DEADLINE_SLACK_S) else "CANCELLED"
            metrics.CANCELLED.labels(method).inc()
            finish(call, code, started)

        def wrap_unary(behaviour, streaming_request: bool):
            async def wrapped(request, context):
                started = time.perf_counter()
                call = begin(context)
                try:
                    check(call, None if streaming_request else request)
                    result = behaviour(checked(request, call) if streaming_request else request, context)
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
                    end(call)

            return wrapped

        def wrap_stream(behaviour, streaming_request: bool):
            async def wrapped(request, context):
                started = time.perf_counter()
                call = begin(context)
                try:
                    check(call, None if streaming_request else request)
                    result = behaviour(checked(request, call) if streaming_request else request, context)
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
                    end(call)

            return wrapped

        read = self._reader(handler.request_deserializer, method)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                wrap_unary(handler.unary_unary, False), read, handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                wrap_unary(handler.stream_unary, True), read, handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                wrap_stream(handler.unary_stream, False), read, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            wrap_stream(handler.stream_stream, True), read, handler.response_serializer)


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises this internally; it already carries its status.
    return type(exc).__name__ == "AbortError" or isinstance(exc, grpc.aio.AbortError)
