"""Structured errors: raise a ServiceError anywhere in a handler (or in a
batcher worker) and the error interceptor turns it into a gRPC status with
google.rpc details, so clients see which field was wrong and why."""

from __future__ import annotations

import re
from collections.abc import Iterable

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2


# Status text travels in HTTP/2 trailers: long text overflows the client's header limit, and
# reprs of library objects (`<_io.BytesIO object at 0x7f...>`) leak internals.
MAX_MESSAGE_CHARS = 1024
MAX_DESCRIPTION_CHARS = 512
QUOTE_CHARS = 48
_OBJECT_REPR = re.compile(r"<[^<>]{0,200}? at 0x[0-9a-fA-F]+>")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")


def scrub(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Status text without object reprs or memory addresses, at most `limit` characters."""
    text = _ADDRESS.sub("0x...", _OBJECT_REPR.sub("<object>", text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quoted(value, limit: int = QUOTE_CHARS) -> str:
    """User input echoed in a message: repr of at most `limit` characters, with the full length."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"


class ServiceError(Exception):
    """A failure to report to the caller with a specific gRPC status code."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        field_violations: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field_violations = list(field_violations)

    def __reduce__(self):
        # Crosses a process (SYN_MODEL_PROCESS) whole: code, message and the fields it names.
        return type(self), (self.code, self.message, self.field_violations)

    def to_status(self, request_id: str = "") -> status_pb2.Status:
        details = []
        if self.field_violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=scrub(f, MAX_DESCRIPTION_CHARS),
                                                                description=scrub(d, MAX_DESCRIPTION_CHARS))
                    for f, d in self.field_violations
                ]
            )
            details.append(_pack(bad))
        if request_id:
            details.append(_pack(error_details_pb2.RequestInfo(request_id=request_id)))
        return status_pb2.Status(code=self.code.value[0], message=scrub(self.message), details=details)


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _field_error(code: grpc.StatusCode, field: str, description: str) -> ServiceError:
    return ServiceError(code, f"{field}: {description}", [(field, description)])


def invalid_argument(field: str, description: str) -> ServiceError:
    return _field_error(grpc.StatusCode.INVALID_ARGUMENT, field, description)


def not_found(field: str, description: str) -> ServiceError:
    return _field_error(grpc.StatusCode.NOT_FOUND, field, description)


def resource_exhausted(field: str, description: str) -> ServiceError:
    return _field_error(grpc.StatusCode.RESOURCE_EXHAUSTED, field, description)


def failed_precondition(field: str, description: str) -> ServiceError:
    return _field_error(grpc.StatusCode.FAILED_PRECONDITION, field, description)


def unavailable(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAVAILABLE, message)


def deadline_exceeded(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED, message)


def cancelled(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.CANCELLED, message)


assert code_pb2.INVALID_ARGUMENT == grpc.StatusCode.INVALID_ARGUMENT.value[0]
