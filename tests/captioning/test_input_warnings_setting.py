"""SYN_INPUT_WARNINGS: the built-ins' out-of-world note is on by default and off when the setting says so,
and switching it off changes nothing else in the answer."""

from __future__ import annotations

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
