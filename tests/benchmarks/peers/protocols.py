"""Request/response classes for the peers' own gRPC APIs, read from the peers' installed packages.

Triton's KServe-v2 `inference.GRPCInferenceService` comes from the descriptors inside the triton
environment's tritonclient; TorchServe's `InferenceAPIsService` from the inference.proto inside its
frontend jar. Nothing of either is installed into the project's environment: the descriptors are
loaded into a private pool here, and calls go through plain `channel.unary_unary` with the method
path each server registers. Ray Serve serves the project's own Captioning/Embedding protos.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

TRITON_INFER = "/inference.GRPCInferenceService/ModelInfer"
TORCHSERVE_PREDICT = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions"


def _site_packages(python: Path) -> Path:
    return next(python.parent.parent.glob("lib/python3*/site-packages"))


def _serialized_file(pb2: Path) -> bytes:
    """The FileDescriptorProto bytes a generated *_pb2.py registers (AddSerializedFile(b'...'))."""
    found = re.search(r"AddSerializedFile\((b'.*?')\)", pb2.read_text(), re.S)
    if not found:
        raise RuntimeError(f"no serialized descriptor in {pb2}")
    return ast.literal_eval(found.group(1))


def _classes(pool: descriptor_pool.DescriptorPool, *names: str) -> list[type]:
    return [message_factory.GetMessageClass(pool.FindMessageTypeByName(n)) for n in names]


def triton(python: Path):
    """(ModelInferRequest, ModelInferResponse) from the triton environment's tritonclient."""
    grpc_dir = _site_packages(python) / "tritonclient" / "grpc"
    pool = descriptor_pool.DescriptorPool()
    for name in ("model_config_pb2.py", "service_pb2.py"):  # dependency first
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(_serialized_file(grpc_dir / name)))
    return _classes(pool, "inference.ModelInferRequest", "inference.ModelInferResponse")


def torchserve(python: Path):
    """(PredictionsRequest, PredictionResponse) from the proto inside TorchServe's frontend jar."""
    import grpc_tools
    import google.rpc

    jar = _site_packages(python) / "ts" / "frontend" / "model-server.jar"
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(jar) as archive:
            (Path(tmp) / "inference.proto").write_bytes(archive.read("inference.proto"))
        out = Path(tmp) / "set.pb"
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp}",
             f"-I{Path(grpc_tools.__file__).parent / '_proto'}", f"-I{Path(google.rpc.__path__[0]).parent.parent}",
             "--include_imports", f"--descriptor_set_out={out}", "inference.proto"],
            check=True)
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return _classes(pool, "org.pytorch.serve.grpc.inference.PredictionsRequest",
                    "org.pytorch.serve.grpc.inference.PredictionResponse")


def unary(channel: grpc.Channel, method: str, request_cls: type, response_cls: type):
    return channel.unary_unary(method, request_serializer=request_cls.SerializeToString,
                               response_deserializer=response_cls.FromString)
