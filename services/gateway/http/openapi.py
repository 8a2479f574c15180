"""The OpenAPI 3.1 document of the HTTP/JSON routes, generated from the .proto files.

protoc (grpcio-tools) compiles `protos/` with source info, so every schema, property,
enum and operation carries its .proto comment; the generated `_pb2` modules drop
comments, which is why the descriptors are compiled here rather than taken from the
pool. Schemas follow protobuf's canonical JSON mapping (lowerCamelCase names, bytes as
base64 strings, 64-bit integers as strings or numbers, enums by name).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import grpc_tools
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from services.gateway.http.transcoder import HTTP_STATUS, NDJSON, TIMEOUT_HEADER, Route
from services.runtime import REPO_ROOT

PROTO_ROOT = REPO_ROOT / "protos"
F = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    F.TYPE_FLOAT: {"type": "number", "format": "float"},
    F.TYPE_INT32: {"type": "integer", "format": "int32"},
    F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    F.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    F.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    # 64-bit integers are JSON strings in the canonical mapping; numbers are accepted on input.
    F.TYPE_INT64: {"type": ["string", "integer"], "format": "int64"},
    F.TYPE_SINT64: {"type": ["string", "integer"], "format": "int64"},
    F.TYPE_SFIXED64: {"type": ["string", "integer"], "format": "int64"},
    F.TYPE_UINT64: {"type": ["string", "integer"], "format": "uint64"},
    F.TYPE_FIXED64: {"type": ["string", "integer"], "format": "uint64"},
    F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_STRING: {"type": "string"},
    F.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
# Well-known types with a JSON form of their own.
WELL_KNOWN = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$"},
    ".google.protobuf.Struct": {"type": "object"},
    ".google.protobuf.Value": {},
    ".google.protobuf.ListValue": {"type": "array"},
    ".google.protobuf.Empty": {"type": "object"},
    ".google.protobuf.FieldMask": {"type": "string"},
}


def compile_protos(proto_root: Path = PROTO_ROOT) -> descriptor_pb2.FileDescriptorSet:
    """Every .proto under proto_root, with imports and comments (protoc's source info)."""
    protos = sorted(str(p.relative_to(proto_root)) for p in proto_root.rglob("*.proto"))
    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.binpb"
        code = protoc.main(["protoc", f"-I{proto_root}", f"-I{include}", "--include_imports",
                            "--include_source_info", f"--descriptor_set_out={out}", *protos])
        if code != 0:
            raise RuntimeError(f"protoc could not compile {proto_root}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


class _Comments:
    """Leading (else trailing) comments by element path, per file."""

    def __init__(self, files: Sequence[descriptor_pb2.FileDescriptorProto]) -> None:
        self._by_file = {}
        for file in files:
            self._by_file[file.name] = {
                tuple(loc.path): (loc.leading_comments or loc.trailing_comments).strip()
                for loc in file.source_code_info.location if loc.leading_comments or loc.trailing_comments}

    def get(self, file: str, path: tuple[int, ...]) -> str:
        text = self._by_file.get(file, {}).get(path, "")
        return "\n".join(line.strip() for line in text.splitlines())


class _Builder:
    def __init__(self, files: descriptor_pb2.FileDescriptorSet) -> None:
        self.comments = _Comments(files.file)
        self.messages: dict[str, tuple[str, tuple, descriptor_pb2.DescriptorProto]] = {}
        self.enums: dict[str, tuple[str, tuple, descriptor_pb2.EnumDescriptorProto]] = {}
        self.services: dict[str, tuple[str, tuple, descriptor_pb2.ServiceDescriptorProto]] = {}
        for file in files.file:
            prefix = f".{file.package}" if file.package else ""
            for i, message in enumerate(file.message_type):
                self._index_message(file.name, f"{prefix}.{message.name}", (4, i), message)
            for i, enum in enumerate(file.enum_type):
                self.enums[f"{prefix}.{enum.name}"] = (file.name, (5, i), enum)
            for i, service in enumerate(file.service):
                self.services[f"{prefix}.{service.name}".lstrip(".")] = (file.name, (6, i), service)
        self.schemas: dict[str, dict] = {}

    def _index_message(self, file: str, name: str, path: tuple, message) -> None:
        self.messages[name] = (file, path, message)
        for i, nested in enumerate(message.nested_type):
            self._index_message(file, f"{name}.{nested.name}", path + (3, i), nested)
        for i, enum in enumerate(message.enum_type):
            self.enums[f"{name}.{enum.name}"] = (file, path + (4, i), enum)

    def ref(self, type_name: str) -> dict:
        """A $ref to the schema of a message or enum (".pkg.Name"), building it on first use."""
        if type_name in WELL_KNOWN:
            return dict(WELL_KNOWN[type_name])
        key = type_name.lstrip(".")
        if key not in self.schemas:
            self.schemas[key] = {}  # placeholder: recursive messages refer to themselves
            self.schemas[key] = self._enum(type_name) if type_name in self.enums else self._message(type_name)
        return {"$ref": f"#/components/schemas/{key}"}

    def _enum(self, type_name: str) -> dict:
        file, path, enum = self.enums[type_name]
        lines = [self.comments.get(file, path)] + [
            f"- `{v.name}`: {self.comments.get(file, path + (2, i))}" for i, v in enumerate(enum.value)]
        return {"type": "string", "enum": [v.name for v in enum.value],
                "description": "\n".join(line for line in lines if line)}

    def _message(self, type_name: str) -> dict:
        file, path, message = self.messages[type_name]
        maps = {f".{type_name.lstrip('.')}.{n.name}": n for n in message.nested_type if n.options.map_entry}
        properties = {}
        for i, field in enumerate(message.field):
            schema = self._field(field, maps)
            comment = self.comments.get(file, path + (2, i))
            if field.HasField("oneof_index") and not field.proto3_optional:
                group = message.oneof_decl[field.oneof_index].name
                comment = f"{comment} (one of `{group}`: set at most one)".strip()
            if comment:
                schema = {**schema, "description": comment} if "$ref" not in schema else {
                    "allOf": [schema], "description": comment}
            properties[field.json_name] = schema
        schema = {"type": "object", "properties": properties}
        description = self.comments.get(file, path)
        if description:
            schema["description"] = description
        return schema

    def _field(self, field, maps: dict) -> dict:
        if field.type == F.TYPE_MESSAGE and field.type_name in maps:
            value = maps[field.type_name].field[1]
            return {"type": "object", "additionalProperties": self._single(value)}
        single = self._single(field)
        if field.label == F.LABEL_REPEATED:
            return {"type": "array", "items": single}
        return single

    def _single(self, field) -> dict:
        if field.type in (F.TYPE_MESSAGE, F.TYPE_GROUP, F.TYPE_ENUM):
            return self.ref(field.type_name)
        return dict(SCALARS[field.type])

    def service_comment(self, service: str) -> str:
        file, path, _ = self.services[service]
        return self.comments.get(file, path)

    def method_comment(self, service: str, method: str) -> str:
        file, path, proto = self.services[service]
        index = next(i for i, m in enumerate(proto.method) if m.name == method)
        return self.comments.get(file, path + (2, index))


ERROR_SCHEMA = {
    "type": "object",
    "description": "Google's JSON error model: the gRPC status with its google.rpc details.",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "status", "message"], "properties": {
        "code": {"type": "integer", "description": "The HTTP status."},
        "status": {"type": "string", "enum": [c.name for c in HTTP_STATUS],
                   "description": "The gRPC status code's name, for example INVALID_ARGUMENT."},
        "grpcCode": {"type": "integer", "description": "The gRPC status code's number."},
        "message": {"type": "string", "description": "What went wrong, naming the field or the upstream."},
        "details": {"type": "array", "description": "google.rpc details: `BadRequest` with `fieldViolations` "
                    "(`field`, `description`) naming each offending field, `RequestInfo` with the `requestId`.",
                    "items": {"type": "object", "properties": {"@type": {"type": "string"}},
                              "additionalProperties": True}},
    }}},
}


def build_document(routes: Sequence[Route], *, version: str, auth: bool,
                   files: descriptor_pb2.FileDescriptorSet | None = None) -> dict:
    builder = _Builder(files or compile_protos())
    paths, tags = {}, {}
    for route in routes:
        service = route.service
        tags.setdefault(service, builder.service_comment(service))
        comment = builder.method_comment(service, route.method.name)
        request_schema = builder.ref("." + route.method.input_type.full_name)
        response_schema = builder.ref("." + route.method.output_type.full_name)
        if route.client_streaming:
            request_schema = {"type": "array", "items": request_schema,
                              "description": "The stream of requests, as a JSON array (or NDJSON lines)."}
        if route.server_streaming:
            ok = {"description": "A stream of responses, one JSON message per line (NDJSON); a failure after "
                                 "the first one arrives as a last line `{\"error\": {...}}`.",
                  "content": {NDJSON: {"schema": response_schema}}}
        else:
            ok = {"description": "The response.", "content": {"application/json": {"schema": response_schema}}}
        error = {"description": "The gRPC status as JSON.",
                 "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        paths[route.path] = {"post": {
            "operationId": f"{service.rsplit('.', 1)[-1]}_{route.method.name}",
            "tags": [service],
            "summary": comment.splitlines()[0] if comment else route.method.name,
            "description": comment + f"\n\ngRPC: `{route.path}`.",
            "parameters": [{"name": TIMEOUT_HEADER, "in": "header", "required": False,
                            "description": "The call's deadline in milliseconds.",
                            "schema": {"type": "integer", "minimum": 1}}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": request_schema}}},
            "responses": {"200": ok, "default": error},
        }}
    document = {
        "openapi": "3.1.0",
        "info": {"title": "Synesthesia gateway (HTTP/JSON)", "version": version,
                 "description": "Every public RPC of the gateway over HTTP, with protobuf's canonical JSON "
                                "mapping. Generated from the .proto files; a method's path is its gRPC path."},
        "servers": [{"url": "/"}],
        "tags": [{"name": name, "description": text} for name, text in tags.items()],
        "paths": paths,
        "components": {"schemas": {**dict(sorted(builder.schemas.items())), "Error": ERROR_SCHEMA}},
    }
    if auth:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document
