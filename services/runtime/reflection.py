"""Server reflection, both `grpc.reflection.v1` (current tools) and `grpc.reflection.v1alpha` (older ones).

grpcio-reflection ships only the v1alpha service. v1 is the same protocol
under a new package: identical messages, field numbers and semantics. So the
one servicer answers both, and the v1 file descriptor (v1alpha's with the
package renamed) is added to the descriptor pool so reflection can describe
itself in either version.
"""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
V1ALPHA_SERVICE_NAME = reflection.SERVICE_NAME
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _register_v1_descriptor() -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = _V1_FILE
    proto.package = "grpc.reflection.v1"
    proto.options.Clear()
    prefix_old, prefix_new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    for message in proto.message_type:
        for spec in message.field:
            if spec.type_name.startswith(prefix_old):
                spec.type_name = prefix_new + spec.type_name[len(prefix_old):]
    for service in proto.service:
        for method in service.method:
            method.input_type = prefix_new + method.input_type[len(prefix_old):]
            method.output_type = prefix_new + method.output_type[len(prefix_old):]
    pool.Add(proto)


def enable(server: grpc.aio.Server, service_names: tuple[str, ...]) -> None:
    """Serve reflection for `service_names` (plus both reflection services) in v1 and v1alpha."""
    _register_v1_descriptor()
    names = tuple(service_names) + (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    servicer = reflection.aio.ReflectionServicer(names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    for service in (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME):
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            service, {"ServerReflectionInfo": handler}),))
