"""A small typed client for a Synesthesia stack (in the spirit of clip-as-service's Client).

    from synesthesia.client import Client
    with Client("127.0.0.1:50050") as syn:
        described = syn.describe("scene.png")          # caption + per-word attention
        imagined = syn.imagine("a large red circle", n=4, seed=7)
        hits = syn.search("a blue square", collection="photos")

Every call goes to the gateway at `target`: it chains the model services and
also forwards their own APIs (search, upsert, collections, features, model
lists), so a stack that publishes one port is fully usable. Pass
`embedding=` or `audio=` to send those calls to a service directly instead.
Images and audio may be paths, bytes, or (images) uint8 numpy arrays. Errors
are the usual `grpc.RpcError` with the server's status code and field-naming
message.

Secured stacks: `Client(target, token=..., ca_file="ca.pem")` speaks TLS;
add `cert_file=` and `key_file=` for mutual TLS. Unset arguments come from
SYN_TOKEN and SYN_CLIENT_CA_FILE / _CERT_FILE / _KEY_FILE / _SERVER_NAME / _TLS
(see synesthesia/channels.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import message_factory

from synesthesia.channels import ChannelSecurity
from synesthesia.healthcheck import status as check_health
from synesthesia.pictures import png_bytes
from synesthesia.services import SERVICES
from synesthesia.tensors import array_to_pcm
from synesthesia.v1 import (
    audio_pb2,
    audio_pb2_grpc,
    common_pb2,
    explain_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
)

DEFAULT_TARGETS = {name: service.target for name, service in SERVICES.items()}
# The servers' message limit (same variable, same default): a request they would refuse fails here before
# it is sent, and every response they may send fits.
MAX_MESSAGE_BYTES = int(os.environ.get("SYN_MAX_MESSAGE_BYTES") or 16 << 20)
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
FEATURE_KINDS = {"magnitude": audio_pb2.FEATURE_KIND_MAGNITUDE, "power": audio_pb2.FEATURE_KIND_POWER,
                 "log-mel": audio_pb2.FEATURE_KIND_LOG_MEL}


def default_target(name: str = "gateway") -> str:
    """SYN_TARGET for the gateway, SYN_<NAME>_TARGET for a service, else the standard loopback port."""
    variable = "SYN_TARGET" if name == "gateway" else SERVICES[name].target_variable
    return os.environ.get(variable, DEFAULT_TARGETS[name])


def image_message(image: str | Path | bytes | np.ndarray) -> common_pb2.Image:
    if isinstance(image, np.ndarray):
        return common_pb2.Image(data=png_bytes(image))
    if isinstance(image, (str, Path)):
        return common_pb2.Image(data=Path(image).read_bytes())
    return common_pb2.Image(data=bytes(image))


def audio_message(audio: str | Path | bytes | np.ndarray, sample_rate_hz: int = 16000) -> common_pb2.AudioClip:
    if isinstance(audio, np.ndarray):
        return common_pb2.AudioClip(pcm=common_pb2.Pcm(samples_f32le=array_to_pcm(audio),
                                                       sample_rate_hz=sample_rate_hz))
    if isinstance(audio, (str, Path)):
        return common_pb2.AudioClip(encoded=Path(audio).read_bytes())
    return common_pb2.AudioClip(encoded=bytes(audio))


class Client:
    def __init__(self, target: str | None = None, *, embedding: str | None = None, audio: str | None = None,
                 timeout_s: float = 120.0, token: str | None = None, ca_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None, server_name: str | None = None,
                 tls: bool | None = None, security: ChannelSecurity | None = None) -> None:
        gateway = target or default_target("gateway")
        # Embedding and audio calls go through the gateway unless a direct address is given.
        self.targets = {"gateway": gateway, "embedding": embedding or gateway, "audio": audio or gateway}
        self.timeout_s = timeout_s
        self.security = security or ChannelSecurity.from_env(
            token=token, ca_file=ca_file, cert_file=cert_file, key_file=key_file, server_name=server_name, tls=tls)
        self.metadata = self.security.metadata() or None
        self._channels: dict[str, grpc.Channel] = {}

    def _channel(self, name: str) -> grpc.Channel:
        target = self.targets[name]  # one channel per address: through the gateway they share it
        if target not in self._channels:
            self._channels[target] = self.security.channel(target, CHANNEL_OPTIONS)
        return self._channels[target]

    @property
    def gateway(self) -> gateway_pb2_grpc.GatewayStub:
        return gateway_pb2_grpc.GatewayStub(self._channel("gateway"))

    def _kw(self) -> dict:
        return {"timeout": self.timeout_s, "metadata": self.metadata}

    # -- through the gateway ---------------------------------------------------------------------------
    # `model` picks the call's main model by its ListModels name, `captioning_model` the captioner
    # that describes the result; empty means the serving service's default.
    def describe(self, image, *, collection: str = "", top_k: int = 0, beam_size: int = 0, model: str = ""):
        return self.gateway.Describe(gateway_pb2.DescribeRequest(
            image=image_message(image), collection=collection, top_k=top_k, beam_size=beam_size, model=model),
            **self._kw())

    def imagine(self, prompt: str, *, n: int = 1, seed: int = 0, model: str = "", captioning_model: str = "",
                embedding_model: str = ""):
        return self.gateway.Imagine(gateway_pb2.ImagineRequest(
            prompt=prompt, image_count=n, seed=seed, model=model, captioning_model=captioning_model,
            embedding_model=embedding_model), **self._kw())

    def translate(self, image, model: str = "", *, captioning_model: str = ""):
        return self.gateway.Translate(gateway_pb2.TranslateRequest(
            image=image_message(image), model=model, captioning_model=captioning_model), **self._kw())

    def listen(self, image, audio, *, model: str = "", captioning_model: str = ""):
        return self.gateway.Listen(gateway_pb2.ListenRequest(
            image=image_message(image), audio=audio_message(audio), model=model, captioning_model=captioning_model),
            **self._kw())

    def run(self, spec: str, inputs: Mapping[str, bytes] | None = None) -> Iterator[gateway_pb2.RunPipelineResponse]:
        return self.gateway.RunPipeline(gateway_pb2.RunPipelineRequest(spec=spec, inputs=dict(inputs or {})),
                                        **self._kw())

    # -- the embedding and audio services (forwarded by the gateway) -----------------------------------
    def explain(self, request: explain_pb2.ExplainRequest) -> explain_pb2.ExplainResponse:
        """Any explanation (a caption word, the judge, a match, a sound, neighbours, a collection map)."""
        return self.gateway.Explain(request, **self._kw())

    def search(self, query: str | None = None, *, image=None, collection: str = "default", top_k: int = 5,
               where: Mapping[str, str] | None = None, model: str = ""):
        """Nearest items to a text or image; `where` keeps items whose metadata has each key=value;
        `model`, when set, must be the collection's model."""
        request = embedding_pb2.SearchRequest(collection=collection, top_k=top_k, metadata_filter=dict(where or {}),
                                              model=model)
        if image is not None:
            request.image.CopyFrom(image_message(image))
        else:
            request.text = query or ""
        return embedding_pb2_grpc.EmbeddingStub(self._channel("embedding")).Search(request, **self._kw())

    def upsert(self, items: list[embedding_pb2.Item], *, collection: str = "default", model: str = ""):
        return embedding_pb2_grpc.EmbeddingStub(self._channel("embedding")).Upsert(
            embedding_pb2.UpsertRequest(collection=collection, items=items, model=model), **self._kw())

    def features(self, audio, *, kind: str = "log-mel", n_fft: int = 0, hop: int = 0, n_mels: int = 0):
        options = audio_pb2.FeatureOptions(kind=FEATURE_KINDS[kind], n_fft=n_fft, hop_length_samples=hop,
                                           n_mels=n_mels)
        return audio_pb2_grpc.AudioStub(self._channel("audio")).ExtractFeatures(
            audio_pb2.ExtractFeaturesRequest(audio=audio_message(audio), options=options), **self._kw())

    def collection(self, collection: str = "default"):
        return embedding_pb2_grpc.EmbeddingStub(self._channel("embedding")).GetCollection(
            embedding_pb2.GetCollectionRequest(collection=collection), **self._kw())

    def delete(self, ids: list[str], *, collection: str = "default"):
        return embedding_pb2_grpc.EmbeddingStub(self._channel("embedding")).Delete(
            embedding_pb2.DeleteRequest(collection=collection, ids=ids), **self._kw())

    def collections(self):
        return embedding_pb2_grpc.EmbeddingStub(self._channel("embedding")).ListCollections(
            embedding_pb2.ListCollectionsRequest(), **self._kw())

    def drop(self, collection: str):
        return embedding_pb2_grpc.EmbeddingStub(self._channel("embedding")).DropCollection(
            embedding_pb2.DropCollectionRequest(collection=collection), **self._kw())

    def models(self) -> dict[str, list[common_pb2.ModelInfo]]:
        """{service name: its loaded models}, from each upstream's ListModels through the gateway."""
        out = {}
        for name, service in SERVICES.items():
            method = service.descriptor().methods_by_name.get("ListModels")
            if method is None:
                continue
            request = message_factory.GetMessageClass(method.input_type)()
            out[name] = list(service.stub(self._channel("gateway")).ListModels(request, **self._kw()).models)
        return out

    # -- operations ------------------------------------------------------------------------------------
    def health(self, timeout_s: float = 3.0) -> dict[str, dict[str, str]]:
        """{name: {"target", "status"}} for the gateway and, as the gateway sees them, every upstream.

        status is SERVING, NOT_SERVING or UNREACHABLE (why). Only the gateway's port is dialled.
        """
        gateway = self.targets["gateway"]
        out = {"gateway": {"target": gateway, "status": check_health(gateway, timeout_s=timeout_s,
                                                                             security=self.security)}}
        try:
            reply = self.gateway.CheckUpstreams(gateway_pb2.CheckUpstreamsRequest(), timeout=timeout_s,
                                                metadata=self.metadata)
        except grpc.RpcError as err:
            return out | {"upstreams": {"target": gateway, "status": f"UNREACHABLE ({err.code().name})"}}
        for upstream in reply.upstreams:
            state = gateway_pb2.UpstreamState.Name(upstream.state).removeprefix("UPSTREAM_STATE_")
            out[upstream.name] = {"target": upstream.target,
                                  "status": f"{state} ({upstream.detail})" if upstream.detail else state}
        return out

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
