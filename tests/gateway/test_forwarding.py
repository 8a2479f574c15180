"""One port for everything: the gateway forwards each upstream's own service, health and errors included.

Each test that calls through `channel` runs twice: on the gateway's own port, and on its nginx front
(SYN_GATEWAY_FRONT_PORT, services/gateway/front.py), which sends forwarded calls straight upstream.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.client import Client
from synesthesia.pictures import png_bytes
from synesthesia.services import GATEWAY, SERVICES, UPSTREAMS
from synesthesia.tensors import array_to_pcm, from_tensor
from synesthesia.v1 import (
    audio_pb2,
    audio_pb2_grpc,
    common_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
)
from tests.conftest import front_target, gateway_env
from tests.servers import free_port, health_status

pytestmark = pytest.mark.slow


@pytest.fixture(params=["gateway", "front"])
def channel(gateway, request):
    with grpc.insecure_channel(gateway.target if request.param == "gateway" else front_target(gateway)) as channel:
        yield channel


def test_collections_round_trip_through_the_gateway(channel, upstream_targets):
    embedding = embedding_pb2_grpc.EmbeddingStub(channel)
    scenes = [render_scene(EVAL_SEEDS[40 + i], objects=1) for i in range(5)]
    upserted = embedding.Upsert(embedding_pb2.UpsertRequest(collection="forwarded", items=[
        embedding_pb2.Item(id=f"s{i}", image=common_pb2.Image(data=png_bytes(s.image)), metadata={"n": str(i)})
        for i, s in enumerate(scenes)]), timeout=60)
    assert upserted.upserted_count == 5
    hits = embedding.Search(embedding_pb2.SearchRequest(
        collection="forwarded", image=common_pb2.Image(data=png_bytes(scenes[2].image)), top_k=2), timeout=60).hits
    assert hits[0].id == "s2" and hits[0].metadata["n"] == "2"
    assert embedding.Delete(embedding_pb2.DeleteRequest(collection="forwarded", ids=["s0"]), timeout=30) \
        .collection_size == 4
    # The upstream itself holds what went through the gateway.
    with grpc.insecure_channel(upstream_targets["embedding"]) as direct:
        size = embedding_pb2_grpc.EmbeddingStub(direct).GetCollection(
            embedding_pb2.GetCollectionRequest(collection="forwarded"), timeout=30).size
    assert size == 4 == embedding.GetCollection(embedding_pb2.GetCollectionRequest(collection="forwarded"),
                                                timeout=30).size


def test_features_unary_and_client_streaming_match_the_upstream(channel, upstream_targets):
    samples = np.sin(np.linspace(0, 400 * np.pi, 16000)).astype(np.float32)
    options = audio_pb2.FeatureOptions(kind=audio_pb2.FEATURE_KIND_POWER, n_fft=256)
    request = audio_pb2.ExtractFeaturesRequest(audio=common_pb2.AudioClip(pcm=common_pb2.Pcm(
        samples_f32le=array_to_pcm(samples), sample_rate_hz=16000)), options=options)
    forwarded = audio_pb2_grpc.AudioStub(channel).ExtractFeatures(request, timeout=30)
    with grpc.insecure_channel(upstream_targets["audio"]) as direct:
        expected = audio_pb2_grpc.AudioStub(direct).ExtractFeatures(request, timeout=30)
    assert forwarded == expected and from_tensor(forwarded.features).shape[0] == 129

    def chunks():
        for i, part in enumerate(np.array_split(samples, 3)):
            yield audio_pb2.StreamFeaturesRequest(options=options if i == 0 else None, chunk=common_pb2.Pcm(
                samples_f32le=array_to_pcm(part), sample_rate_hz=16000))

    streamed = audio_pb2_grpc.AudioStub(channel).StreamFeatures(chunks(), timeout=30)
    assert streamed.chunk_count == 3
    np.testing.assert_allclose(from_tensor(streamed.result.features), from_tensor(expected.features),
                               rtol=1e-6, atol=1e-6)


def test_every_upstream_method_answers_on_the_gateway(channel):
    for service in UPSTREAMS:
        listed = service.stub(channel).ListModels(
            getattr(service.pb2(), service.descriptor().methods_by_name["ListModels"].input_type.name)(), timeout=30)
        assert listed.models, service.name


def test_upstream_errors_come_back_unchanged_with_their_details(channel):
    with pytest.raises(grpc.RpcError) as err:
        embedding_pb2_grpc.EmbeddingStub(channel).Search(
            embedding_pb2.SearchRequest(collection="forwarded", text="a red circle", top_k=100000), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("top_k"), err.value.details()


@pytest.mark.parametrize("port", ["gateway", "front"])
def test_health_and_reflection_cover_the_forwarded_services(gateway, port):
    target = gateway.target if port == "gateway" else front_target(gateway)
    for service in UPSTREAMS:
        assert health_status(target, service.grpc_service) == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        reply = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                               timeout=10))
    listed = {s.name for s in reply.list_services_response.service}
    assert {s.grpc_service for s in SERVICES.values()} <= listed


def test_check_upstreams_and_client_health_name_each_target(gateway, upstream_targets):
    with Client(gateway.target) as client:
        status = client.health()
    assert status["gateway"] == {"target": gateway.target, "status": "SERVING"}
    for service in UPSTREAMS:
        assert status[service.name] == {"target": upstream_targets[service.name], "status": "SERVING"}


def test_dead_upstream_is_unreachable_by_name_and_its_service_not_serving(service_process, upstream_targets):
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    gw = service_process("gateway", gateway_env(dict(upstream_targets, embedding=dead)), wait=False)
    with grpc.insecure_channel(gw.target) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
        reply = gateway_pb2_grpc.GatewayStub(channel).CheckUpstreams(gateway_pb2.CheckUpstreamsRequest(), timeout=30)
        states = {u.name: (u.target, u.state) for u in reply.upstreams}
        assert states["embedding"] == (dead, gateway_pb2.UPSTREAM_STATE_UNREACHABLE)
        assert states["audio"] == (upstream_targets["audio"], gateway_pb2.UPSTREAM_STATE_SERVING)
        assert [u.name for u in reply.upstreams] == [s.name for s in UPSTREAMS]
        with pytest.raises(grpc.RpcError) as err:
            embedding_pb2_grpc.EmbeddingStub(channel).Search(
                embedding_pb2.SearchRequest(collection="x", text="a red circle"), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"upstream embedding.Search at {dead}" in err.value.details()
    assert health_status(gw.target, SERVICES["embedding"].grpc_service) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert health_status(gw.target, SERVICES["audio"].grpc_service) == health_pb2.HealthCheckResponse.SERVING
    # The gateway's own calls that need no embedding still work: it stays SERVING (issue 13).
    assert health_status(gw.target, GATEWAY.grpc_service) == health_pb2.HealthCheckResponse.SERVING
