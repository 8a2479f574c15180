"""Gateway: chained calls per second through `services.gateway` over the four real model services.

The upstreams (captioning, generation, audio, embedding; one process each, shipped checkpoints) are
started once when this module is imported and stopped at exit; the harness then starts the gateway in
front of them. Inputs are held-out ShapesWorld scenes (64x64 PNG). Rows:

- Describe: Caption with per-word attention (beam 3), no collection: one hop, so its cost over a direct
  captioning.Caption call (the "direct" section below) is the gateway's own overhead.
- Listen: audio.Localize, isolate the top box, caption it: two hops in sequence.
- Imagine (2 images): TextToImage, then two captions, EmbedImages and EmbedTexts concurrently.

The "in-process" column does not apply (a gateway has no model); the direct section drives the same
captioning process over gRPC without the gateway, at the same concurrencies. The hop section measures
what one forwarded call pays for the gateway at concurrency 1 (the target: <= 1 ms p50), on the
gateway's own port and on its nginx front (SYN_GATEWAY_FRONT_PORT, services/gateway/front.py).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import statistics
import time

import grpc
import numpy as np
import psutil
import soundfile

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.pictures import png_bytes
from synesthesia.services import UPSTREAM_NAMES
from synesthesia.v1 import (
    captioning_pb2,
    captioning_pb2_grpc,
    common_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
)
from tests.benchmarks.harness import Scenario, drive, summarise
from tests.servers import ServiceProcess, free_port

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
    return ["\n".join(rows), hop_section()]


HOP_ROUNDS = int(os.environ.get("SYN_BENCH_HOP_ROUNDS", "300"))


def _cpu_s(gateway_pid: int) -> dict[str, float]:
    """User + system seconds of the gateway's process tree, split into its nginx front ("front": the
    nginx children and their workers) and the rest ("gateway"), from one walk of the tree."""
    def seconds(proc: psutil.Process) -> float:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            return times.user + times.system
        return 0.0

    root = psutil.Process(gateway_pid)
    front = 0.0
    for child in root.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.name() == "nginx":
                front += sum(seconds(proc) for proc in [child, *child.children(recursive=True)])
    total = sum(seconds(proc) for proc in [root, *root.children(recursive=True)])
    return {"gateway": total - front, "front": front}


def hop_section() -> str:
    """Direct, via the gateway's port and via its nginx front, one call at a time, the three paths in turn.

    Calls alternate path by path (the order rotating each round), so anything else the machine does
    falls on every path alike; the hop is a path's p50 minus the direct p50. CPU per call: the gateway
    process without its nginx child, and nginx's master and worker, over the calls each one served.
    """
    front_port = free_port()
    gateway = ServiceProcess("services.gateway", GATEWAY_ENV | {"SYN_GATEWAY_FRONT_PORT": str(front_port)}).start()
    try:
        paths = {"direct": None, "gateway": gateway.target, "front": f"127.0.0.1:{front_port}"}
        rpcs = {
            "embedding.ListModels (no model work)": (
                "embedding", lambda ch: embedding_pb2_grpc.EmbeddingStub(ch).ListModels,
                lambda i: embedding_pb2.ListEmbeddingModelsRequest()),
            "embedding.EmbedImages (one 64x64 PNG)": (
                "embedding", lambda ch: embedding_pb2_grpc.EmbeddingStub(ch).EmbedImages,
                lambda i: embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=PNGS[i % len(PNGS)])])),
            "captioning.Caption (beam 3)": (
                "captioning", lambda ch: captioning_pb2_grpc.CaptioningStub(ch).Caption,
                lambda i: captioning_pb2.CaptionRequest(image=common_pb2.Image(data=PNGS[i % len(PNGS)]),
                                                        options=captioning_pb2.CaptionOptions(beam_size=3))),
        }
        rows = [f"### Gateway hop at concurrency 1 ({HOP_ROUNDS} calls per path, the paths alternated call by call)",
                "", "| RPC | direct p50 ms | via gateway p50 ms | gateway hop ms | via nginx front p50 ms | "
                "front hop ms | gateway CPU ms/call | front (nginx) CPU ms/call |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, (upstream, method, request) in rpcs.items():
            channels = {path: grpc.insecure_channel(target or SERVERS[upstream].target)
                        for path, target in paths.items()}
            try:
                calls = {path: method(channel) for path, channel in channels.items()}
                for call in calls.values():
                    for i in range(20):
                        call(request(i), timeout=120)
                latencies: dict[str, list[float]] = {path: [] for path in calls}
                cpu: dict[str, float] = {"gateway": 0.0, "front": 0.0}
                order = list(calls)
                for i in range(HOP_ROUNDS):
                    order = order[1:] + order[:1]
                    for path in order:
                        before = _cpu_s(gateway.process.pid)[path] if path in cpu else 0.0
                        started = time.perf_counter()
                        calls[path](request(i), timeout=120)
                        latencies[path].append((time.perf_counter() - started) * 1e3)
                        if path in cpu:  # the CPU of the process that served this call, over this call
                            cpu[path] += _cpu_s(gateway.process.pid)[path] - before
            finally:
                for channel in channels.values():
                    channel.close()
            p50 = {path: statistics.median(values) for path, values in latencies.items()}
            rows.append(f"| {name} | {p50['direct']:.2f} | {p50['gateway']:.2f} | "
                        f"{p50['gateway'] - p50['direct']:+.2f} | "
                        f"{p50['front']:.2f} | {p50['front'] - p50['direct']:+.2f} | "
                        f"{1e3 * cpu['gateway'] / HOP_ROUNDS:.2f} | {1e3 * cpu['front'] / HOP_ROUNDS:.2f} |")
            print(rows[-1], flush=True)
    finally:
        gateway.stop()
    return "\n".join(rows)
