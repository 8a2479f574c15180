"""The per-call memory budget (services/runtime/README.md, *Per-call budget*), held on real servers.

Each call at one of the image limits, or past them, must leave the serving process's peak RSS
within BUDGET_MB of where it was before the call: peak RSS is reset through /proc/PID/clear_refs
and read back from VmHWM, so a transient allocation counts even when it is freed again.
Calls past the limits must be refused by name. Time is not asserted (shared, loaded machines);
`make bench` reports it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import pytest

from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2, embedding_pb2, embedding_pb2_grpc
from tests import hostile_inputs

BUDGET_MB = 300
OPTIONS = [("grpc.max_receive_message_length", 32 << 20), ("grpc.max_send_message_length", 32 << 20)]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def peak_growth_mb(pid: int, call) -> tuple[float, object]:
    """(peak RSS growth in MB during `call()`, its result or the RpcError it raised)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := current RSS
    before = _status_kb(pid, "VmRSS")
    try:
        outcome = call()
    except grpc.RpcError as err:
        outcome = err
    return (_status_kb(pid, "VmHWM") - before) / 1024, outcome


def _caption(target: str, data: bytes):
    with grpc.insecure_channel(target, options=OPTIONS) as channel:
        return captioning_pb2_grpc.CaptioningStub(channel).Caption(
            captioning_pb2.CaptionRequest(image=common_pb2.Image(data=data)), timeout=120)


def _embed(target: str, data: bytes):
    with grpc.insecure_channel(target, options=OPTIONS) as channel:
        return embedding_pb2_grpc.EmbeddingStub(channel).EmbedImages(
            embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=data)]), timeout=120)


@pytest.fixture(scope="module")
def servers(shared_service, tmp_path_factory):
    index = tmp_path_factory.mktemp("budget-index")
    return {
        "captioning": (shared_service("captioning"), _caption),
        "embedding": (shared_service("embedding", {"SYN_EMBEDDING_INDEX_DIR": str(index)}), _embed),
    }


@pytest.mark.slow
@pytest.mark.parametrize("service", ["captioning", "embedding"])
def test_a_call_at_each_image_limit_stays_within_the_memory_budget(servers, service):
    server, call = servers[service]
    call(server.target, hostile_inputs.png(64, 64, "RGB"))  # first-call allocations are not the image's
    for name, data in hostile_inputs.images_at_the_limits().items():
        grown, outcome = peak_growth_mb(server.process.pid, lambda: call(server.target, data))
        assert not isinstance(outcome, grpc.RpcError), f"{name}: {outcome.details()}"
        print(f"{service} {name}: peak RSS +{grown:.0f} MB")
        assert grown < BUDGET_MB, f"{service} {name}: peak RSS grew {grown:.0f} MB (budget {BUDGET_MB} MB)"


@pytest.mark.parametrize("service", ["captioning", "embedding"])
def test_images_past_the_limits_are_refused_by_name_without_decoding(servers, service):
    server, call = servers[service]
    for name, (data, setting) in hostile_inputs.images_past_the_limits().items():
        grown, outcome = peak_growth_mb(server.process.pid, lambda: call(server.target, data))
        assert isinstance(outcome, grpc.RpcError), name
        assert outcome.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{name}: {outcome.details()}"
        assert setting in outcome.details(), f"{name}: {outcome.details()}"
        assert grown < 64, f"{service} {name}: peak RSS grew {grown:.0f} MB for a refused image"
    assert call(server.target, hostile_inputs.png(64, 64, "RGB"))  # and it keeps serving
