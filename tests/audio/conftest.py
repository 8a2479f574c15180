"""One Audio service process for the read-only tests of this folder, and its stub."""

from __future__ import annotations

import grpc
import pytest

from synesthesia.v1 import audio_pb2_grpc

OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


@pytest.fixture(scope="session")
def audio_target(shared_service) -> str:
    return shared_service("audio").target


@pytest.fixture(scope="session")
def audio_stub(audio_target):
    with grpc.insecure_channel(audio_target, options=OPTIONS) as channel:
        yield audio_pb2_grpc.AudioStub(channel)
