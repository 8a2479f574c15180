"""The embedding service on a full index volume (a small tmpfs; CI runs as root): Upsert answers
RESOURCE_EXHAUSTED naming the volume and its setting, health turns NOT_SERVING, searches go on,
health recovers by itself once there is room, and after a crash and a restart every acknowledged id
is there and no refused one."""

from __future__ import annotations

import subprocess

import grpc
from grpc_health.v1 import health_pb2

from synesthesia.v1 import embedding_pb2
from tests.embedding.conftest import everything, stub_for, text_item, wait_for
from tests.runtime.helpers import field_violations
from tests.servers import health_status

E = embedding_pb2
SERVING = health_pb2.HealthCheckResponse.SERVING


def test_a_full_index_volume_refuses_writes_and_loses_nothing(service_process, small_volume):
    env = {"SYN_EMBEDDING_INDEX_DIR": str(small_volume), "SYN_EMBEDDING_SNAPSHOT_EVERY": "10",
           "SYN_EMBEDDING_SNAPSHOT_INTERVAL_S": "0"}
    server = service_process("embedding", env=env)
    acked, refused = [], []
    channel, stub = stub_for(server.target)
    with channel:
        for i in range(400):
            ids = [f"a{i}", f"b{i}"]
            request = E.UpsertRequest(collection="full", items=[
                text_item(ids[0], "a large red circle", pad="p" * 2000),
                text_item(ids[1], "a small blue square", pad="q" * 2000)])
            try:
                stub.Upsert(request, timeout=30)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
                assert str(small_volume) in exc.details() and "SYN_EMBEDDING_INDEX_DIR" in exc.details()
                assert field_violations(exc) and field_violations(exc)[0][0] == "items"
                refused.extend(ids)
                if len(refused) >= 10:
                    break
            else:
                acked.extend(ids)
        assert acked and len(refused) == 10
        assert wait_for(lambda: health_status(server.target) != SERVING, 10), "health stayed SERVING"
        # Reads still work on a full volume.
        hits = stub.Search(E.SearchRequest(collection="full", text="a large red circle", top_k=1), timeout=30).hits
        assert hits and hits[0].id.startswith("a")
        # Room again: health recovers by itself and writes are taken.
        subprocess.run(["mount", "-o", "remount,size=16m", str(small_volume)], check=True)
        assert wait_for(lambda: health_status(server.target) == SERVING, 10), "health did not recover"
        stub.Upsert(E.UpsertRequest(collection="full", items=[text_item("recovered", "a green cross")]), timeout=30)
        acked.append("recovered")
    server.kill()  # a crash: no snapshot at shutdown, the log is replayed

    again = service_process("embedding", env=env)
    channel, stub = stub_for(again.target)
    with channel:
        present = everything(stub, "full")
        assert set(acked) <= present.keys(), f"{len(set(acked) - present.keys())} acknowledged ids lost"
        assert not present.keys() & set(refused), "a refused write came back"
        stub.Upsert(E.UpsertRequest(collection="full", items=[text_item("after", "a green cross")]), timeout=30)
        assert health_status(again.target) == SERVING
