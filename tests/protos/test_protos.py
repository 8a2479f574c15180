"""The contracts: generated code is fresh, and the protos follow the API style guide."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import grpc_tools
import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = sorted((ROOT / "protos").rglob("*.proto"))


def test_committed_stubs_match_a_fresh_generation():
    result = subprocess.run([sys.executable, "-m", "scripts.gen_protos", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def descriptors() -> descriptor_pb2.FileDescriptorSet:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        include = Path(grpc_tools.__file__).parent / "_proto"
        args = ["protoc", f"-I{ROOT / 'protos'}", f"-I{include}", "--include_source_info",
                f"--descriptor_set_out={out}", *(str(p.relative_to(ROOT / "protos")) for p in PROTOS)]
        assert protoc.main(args) == 0
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def test_every_file_is_in_the_versioned_package(descriptors):
    assert {f.package for f in descriptors.file} == {"synesthesia.v1"}
    names = {Path(f.name).stem for f in descriptors.file}
    assert {"common", "captioning", "generation", "audio", "embedding", "gateway"} <= names


def _commented_paths(file: descriptor_pb2.FileDescriptorProto) -> set[tuple[int, ...]]:
    return {tuple(loc.path) for loc in file.source_code_info.location if loc.leading_comments.strip()}


def test_every_message_field_enum_value_and_rpc_is_commented(descriptors):
    missing = []
    for file in descriptors.file:
        commented = _commented_paths(file)
        for mi, message in enumerate(file.message_type):
            for fi, field in enumerate(message.field):
                if (4, mi, 2, fi) not in commented:
                    missing.append(f"{file.name}: {message.name}.{field.name}")
        for ei, enum in enumerate(file.enum_type):
            for vi, value in enumerate(enum.value):
                if (5, ei, 2, vi) not in commented:
                    missing.append(f"{file.name}: {enum.name}.{value.name}")
        for si, service in enumerate(file.service):
            for ri, rpc in enumerate(service.method):
                if (6, si, 2, ri) not in commented:
                    missing.append(f"{file.name}: {service.name}.{rpc.name}")
    assert not missing, missing


def test_enums_start_with_an_unspecified_zero(descriptors):
    for file in descriptors.file:
        for enum in file.enum_type:
            zero = enum.value[0]
            assert zero.number == 0 and zero.name.endswith("_UNSPECIFIED"), enum.name


def test_each_rpc_has_its_own_request_and_response(descriptors):
    seen: dict[str, str] = {}
    for file in descriptors.file:
        for service in file.service:
            for rpc in service.method:
                for kind, name in (("request", rpc.input_type), ("response", rpc.output_type)):
                    short = name.rsplit(".", 1)[-1]
                    assert short.endswith(("Request", "Response")), f"{service.name}.{rpc.name} {kind} {short}"
                    assert short not in seen, f"{short} used by {seen.get(short)} and {service.name}.{rpc.name}"
                    seen[short] = f"{service.name}.{rpc.name}"


def test_tensors_travel_as_packed_bytes(descriptors):
    for file in descriptors.file:
        for message in file.message_type:
            for field in message.field:
                repeated_float = field.label == field.LABEL_REPEATED and field.type in (field.TYPE_FLOAT,
                                                                                         field.TYPE_DOUBLE)
                # Only short axes (frequency labels) may be repeated floats.
                if repeated_float:
                    assert field.name == "frequencies_hz", f"{message.name}.{field.name}"
