"""Gateway: chained calls per second through `services.gateway` over the four real model services.

The upstreams (captioning, generation, audio, embedding; one process each, shipped checkpoints) are
started once when this module is imported and stopped at exit; the harness then starts the gateway in
front of them. Inputs are held-out ShapesWorld scenes (64x64 PNG). Rows:

- Describe: Caption with per-word attention (beam 3), no collection: one hop, so its cost over a direct
  captioning.Caption call (the "direct" section below) is the gateway's own overhead.
- Listen: audio.Localize, isolate the top box, caption it: two hops in sequence.
- Imagine (2 images): TextToImage, then two captions, EmbedImages and EmbedTexts concurrently.

The "in-process" column does not apply (a gateway has no model); the direct section drives the same
captioning process over gRPC without the gateway, at the same concurrencies.
"""

from __future__ import annotations

import atexit
import io

import grpc
import numpy as np
import soundfile

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.pictures import png_bytes
from synesthesia.services import UPSTREAM_NAMES
from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2, gateway_pb2, gateway_pb2_grpc
from tests.benchmarks.harness import Scenario, drive, summarise
from tests.servers import ServiceProcess

UPSTREAMS = UPSTREAM_NAMES
SCENES = [render_scene(seed, objects=2) for seed in EVAL_SEEDS[:32]]
PNGS = [png_bytes(s.image) for s in SCENES]


def _wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, 16000, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def _start_upstreams() -> dict[str, ServiceProcess]:
    servers = {}
    for name in UPSTREAMS:
        servers[name] = ServiceProcess(f"services.{name}").start(wait=False)
    for server in servers.values():
        server.wait_serving()
    atexit.register(lambda: [s.stop() for s in servers.values()])
    return servers


SERVERS = _start_upstreams()
GATEWAY_ENV = {f"SYN_{n.upper()}_TARGET": s.target for n, s in SERVERS.items()} | {
    "SYN_GATEWAY_HEALTH_INTERVAL_S": "0.5"}


def _describe(channel):
    stub = gateway_pb2_grpc.GatewayStub(channel)
    requests = [gateway_pb2.DescribeRequest(image=common_pb2.Image(data=p), beam_size=3) for p in PNGS]
    return lambda i: stub.Describe(requests[i % len(requests)], timeout=120)


def _listen(channel):
    stub = gateway_pb2_grpc.GatewayStub(channel)
    requests = [gateway_pb2.ListenRequest(image=common_pb2.Image(data=p),
                                          audio=common_pb2.AudioClip(encoded=_wav(s.audio)))
                for p, s in zip(PNGS, SCENES)]
    return lambda i: stub.Listen(requests[i % len(requests)], timeout=120)


def _imagine(channel):
    stub = gateway_pb2_grpc.GatewayStub(channel)
    prompts = [s.captions[0] for s in SCENES]
    return lambda i: stub.Imagine(gateway_pb2.ImagineRequest(prompt=prompts[i % len(prompts)], image_count=2,
                                                             seed=i + 1), timeout=120)


SCENARIOS = [
    Scenario(name="gateway.Describe (caption, beam 3, attention)", module="services.gateway", make_call=_describe,
             unit="calls", env=GATEWAY_ENV, min_calls=48),
    Scenario(name="gateway.Listen (localise + caption)", module="services.gateway", make_call=_listen,
             unit="calls", env=GATEWAY_ENV, min_calls=48),
    Scenario(name="gateway.Imagine (2 images: generate, caption, embed)", module="services.gateway",
             make_call=_imagine, unit="calls", env=GATEWAY_ENV, min_calls=24, calls_per_worker=2),
]


def extra_sections() -> list[str]:
    """The same Caption calls straight to the captioning process, for the gateway's per-hop overhead."""
    rows = ["### Direct captioning.Caption (no gateway), same inputs and options", "",
            "| concurrency | calls | calls/s | p50 ms | p99 ms |", "| ---: | ---: | ---: | ---: | ---: |"]
    requests = [captioning_pb2.CaptionRequest(image=common_pb2.Image(data=p), include_attention=True,
                                              options=captioning_pb2.CaptionOptions(beam_size=3)) for p in PNGS]
    with grpc.insecure_channel(SERVERS["captioning"].target) as channel:
        stub = captioning_pb2_grpc.CaptioningStub(channel)

        def call(i: int):
            return stub.Caption(requests[i % len(requests)], timeout=120)

        for i in range(3):
            call(i)
        for concurrency in (1, 8, 32):
            result = drive(call, concurrency, max(48, 4 * concurrency))
            p50, p99 = summarise(result.latencies_ms)
            rows.append(f"| {concurrency} | {result.calls} | {result.throughput(1):.1f} | {p50:.1f} | {p99:.1f} |")
    return ["\n".join(rows)]
