"""HTTP/JSON <-> gRPC for every method of the gateway's public services.

Routes are derived from the service descriptors (`POST /<package.Service>/<Method>`,
the gRPC path itself, as Connect and Envoy's transcoder spell it), so an RPC added to
a .proto is reachable over HTTP with no code here. Each HTTP call becomes a real gRPC
call to the same server over a private unix socket: the token check, request ids,
limits, metrics and error details are exactly those of a gRPC caller.

Bodies use protobuf's canonical JSON mapping (lowerCamelCase names, bytes as base64,
64-bit integers as strings, enums by name; snake_case names are accepted on input).
Server-streaming methods answer NDJSON, one JSON message per line; a failure after the
first message arrives as a last line `{"error": {...}}`. Client-streaming methods take a
JSON array (or NDJSON) of request messages. Errors follow Google's JSON error model:
`{"error": {"code": <HTTP status>, "status": "INVALID_ARGUMENT", "message": ...,
"details": [{"@type": ".../google.rpc.BadRequest", "fieldViolations": [...]}, ...]}}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.rpc import error_details_pb2, status_pb2

# The mapping in google/rpc/code.proto (and grpc-gateway, Envoy, Connect).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
# HTTP request headers passed on as gRPC metadata (credentials, request id, trace context).
FORWARDED_HEADERS = ("authorization", "x-request-id", "traceparent", "tracestate", "baggage")
# Connect's deadline header: the call's deadline in milliseconds.
TIMEOUT_HEADER = "connect-timeout-ms"
NDJSON = "application/x-ndjson"


@dataclass(frozen=True)
class Route:
    """One RPC reachable over HTTP."""

    service: str
    method: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method.name}"

    @property
    def request_class(self):
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def response_class(self):
        return message_factory.GetMessageClass(self.method.output_type)

    @property
    def client_streaming(self) -> bool:
        return self.method.client_streaming

    @property
    def server_streaming(self) -> bool:
        return self.method.server_streaming


def routes_for(service_names: Iterable[str]) -> list[Route]:
    """Every method of the named services, from the generated descriptors in the default pool."""
    pool = descriptor_pool.Default()
    return [Route(name, method) for name in service_names for method in pool.FindServiceByName(name).methods]


class HttpCallError(Exception):
    """A failure to answer as JSON: a gRPC status code, a message and google.rpc details."""

    def __init__(self, code: grpc.StatusCode, message: str, details: Sequence = (), request_id: str = "",
                 http_status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details, self.request_id = code, message, list(details), request_id
        self.http_status = http_status or HTTP_STATUS.get(code, 500)

    def body(self) -> dict:
        return {"error": {
            "code": self.http_status,
            "status": self.code.name,
            "grpcCode": self.code.value[0],
            "message": self.message,
            "details": [json_format.MessageToDict(d) for d in self.details],
        }}

    @classmethod
    def invalid(cls, field: str, description: str) -> "HttpCallError":
        violation = error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)])
        return cls(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {description}", [_pack(violation)])

    @classmethod
    def from_rpc_error(cls, err: grpc.aio.AioRpcError) -> "HttpCallError":
        trailing = err.trailing_metadata() or ()
        details = []
        for key, value in trailing:
            if key == "grpc-status-details-bin":
                details = list(status_pb2.Status.FromString(value).details)
        request_id = next((v for k, v in trailing if k == "x-request-id"), "")
        return cls(err.code(), err.details() or err.code().name, details, request_id)


def _pack(message):
    from google.protobuf import any_pb2

    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _parse_error_field(text: str) -> str:
    """'Failed to parse image field: Failed to parse data field: ...' -> 'image.data'."""
    nested = re.findall(r"Failed to parse (\w+) field", text)
    if nested:
        return ".".join(nested)
    unknown = re.search(r'has no field named "([^"]+)"', text)
    return unknown.group(1) if unknown else "body"


def parse_request(route: Route, body: bytes) -> object:
    """One request message, or for client-streaming methods a list of them, from a JSON body."""
    text = body.decode("utf-8", errors="replace").strip()
    if not route.client_streaming:
        return _parse_one(route, text or "{}")
    if not text:
        return []
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HttpCallError.invalid("body", f"not a JSON array of requests: {exc}") from None
        return [_parse_one(route, json.dumps(item), index) for index, item in enumerate(items)]
    return [_parse_one(route, line, index) for index, line in enumerate(text.splitlines()) if line.strip()]


def _parse_one(route: Route, text: str, index: int | None = None):
    try:
        return json_format.Parse(text, route.request_class())
    except json_format.ParseError as exc:
        field = _parse_error_field(str(exc))
        if index is not None:
            field = f"[{index}].{field}" if field != "body" else f"[{index}]"
        raise HttpCallError.invalid(field, f"{exc} (the body must be a {route.method.input_type.full_name} "
                                           "in protobuf's JSON mapping)") from None


def to_json(message) -> dict:
    # Fields left at their default are printed too, so a reader sees every field the RPC answers.
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def call_options(headers, default_timeout_s: float | None) -> dict:
    """gRPC metadata and timeout from the HTTP request's headers."""
    metadata = tuple((name, headers[name]) for name in FORWARDED_HEADERS if headers.get(name))
    timeout = default_timeout_s
    raw = headers.get(TIMEOUT_HEADER)
    if raw:
        try:
            timeout = int(raw) / 1000
        except ValueError:
            raise HttpCallError.invalid(f"header {TIMEOUT_HEADER}", f"must be whole milliseconds, got {raw!r}") \
                from None
        if timeout <= 0:
            raise HttpCallError.invalid(f"header {TIMEOUT_HEADER}", "must be positive")
    return {"metadata": metadata, "timeout": timeout}


def multicallable(channel: grpc.aio.Channel, route: Route):
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}
    make = kind[(route.client_streaming, route.server_streaming)]
    return make(route.path, request_serializer=route.request_class.SerializeToString,
                response_deserializer=route.response_class.FromString)
