"""Structured errors: raise a ServiceError anywhere in a handler (or in a
batcher worker) and the error interceptor turns it into a gRPC status with
google.rpc details, so clients see which field was wrong and why."""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2


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

    def to_status(self, request_id: str = "") -> status_pb2.Status:
        details = []
        if self.field_violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in self.field_violations
                ]
            )
            details.append(_pack(bad))
        if request_id:
            details.append(_pack(error_details_pb2.RequestInfo(request_id=request_id)))
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=details)


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


assert code_pb2.INVALID_ARGUMENT == grpc.StatusCode.INVALID_ARGUMENT.value[0]
