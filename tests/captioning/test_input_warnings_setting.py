"""SYN_INPUT_WARNINGS: the built-ins' out-of-world note is on by default and off when the setting says so,
switching it off changes nothing else in the answer, and a service with it off never loads the
compiled check (numba's LLVM, about 110 MB per process)."""

from __future__ import annotations

from pathlib import Path

import grpc

from synesthesia.v1 import captioning_pb2_grpc
from tests.captioning.conftest import OPTIONS, caption_request, encode
from tests.shapesworld.test_world_check import photographs


def test_the_out_of_world_note_follows_syn_input_warnings(shared_service, captioning_stub):
    photo = encode(dict(photographs())["astronaut[0]"])
    default = captioning_stub.Caption(caption_request(photo))
    assert len(default.warnings) == 1 and "ShapesWorld" in default.warnings[0]

    quiet = shared_service("captioning", {"SYN_INPUT_WARNINGS": "false"})
    with grpc.insecure_channel(quiet.target, options=OPTIONS) as channel:
        reply = captioning_pb2_grpc.CaptioningStub(channel).Caption(caption_request(photo))
    assert list(reply.warnings) == []
    assert reply.caption == default.caption and abs(reply.log_probability - default.log_probability) < 1e-5

    def llvm_loaded(service) -> bool:
        return "llvmlite" in Path(f"/proc/{service.process.pid}/maps").read_text()

    assert llvm_loaded(shared_service("captioning")) and not llvm_loaded(quiet)
