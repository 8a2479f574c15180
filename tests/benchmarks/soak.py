"""Soak and hostile inputs (issue 13): a real captioning server under 10,000 calls at concurrency 32,
one call in ten hostile (bytes that are not protobuf, broken images, images past each limit), with
its RSS at the start, middle and end; then the time and peak-RSS growth of single hostile calls on
the captioning and audio services and of the pipeline parser. RSS must stay flat and every hostile
call must be refused in milliseconds."""

from __future__ import annotations

import time
from pathlib import Path

import grpc

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.pictures import png_bytes
from synesthesia.v1 import audio_pb2, audio_pb2_grpc, captioning_pb2, captioning_pb2_grpc, common_pb2
from tests import hostile_inputs
from tests.benchmarks.harness import THREADS, drive
from tests.servers import ServiceProcess

CALLS = 10_000
CONCURRENCY = 32
OPTIONS = [("grpc.max_receive_message_length", 32 << 20), ("grpc.max_send_message_length", 32 << 20)]


def _rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _hostile_requests() -> list[tuple[str, bytes]]:
    """(label, raw request bytes) for the Caption method: protobuf garbage and hostile images."""
    out = [(f"garbage {k}", v) for k, v in hostile_inputs.GARBAGE_MESSAGES.items()]
    images = {k: v for k, (v, _) in hostile_inputs.images_past_the_limits().items()}
    images.update(hostile_inputs.broken_images())
    for label, data in images.items():
        out.append((label, captioning_pb2.CaptionRequest(image=common_pb2.Image(data=data)).SerializeToString()))
    return out


def soak() -> str:
    server = ServiceProcess("services.captioning", {"SYN_TORCH_THREADS": str(THREADS)}).start()
    try:
        good = [captioning_pb2.CaptionRequest(image=common_pb2.Image(data=png_bytes(
            render_scene(EVAL_SEEDS[i]).image))).SerializeToString() for i in range(64)]
        hostile = _hostile_requests()
        rss = {"start": _rss_mb(server.process.pid)}
        codes: dict[str, int] = {}
        with grpc.insecure_channel(server.target, options=OPTIONS) as channel:
            caption = channel.unary_unary("/synesthesia.v1.Captioning/Caption")

            def call(i: int):
                data = hostile[(i // 10) % len(hostile)][1] if i % 10 == 9 else good[i % len(good)]
                try:
                    caption(data, timeout=120)
                    code = "OK"
                except grpc.RpcError as err:
                    code = err.code().name
                codes[code] = codes.get(code, 0) + 1
                if i == CALLS // 2:
                    rss["middle"] = _rss_mb(server.process.pid)

            result = drive(call, CONCURRENCY, CALLS)
        rss["end"] = _rss_mb(server.process.pid)
        peak = _rss_mb(server.process.pid, "VmHWM")
    finally:
        server.stop()
    lat = sorted(result.latencies_ms)
    return (f"### Soak: {CALLS:,} Caption calls at concurrency {CONCURRENCY}, one in ten hostile\n\n"
            f"| RSS start | RSS middle | RSS end | peak | wall | calls/s | p50 / p99 ms | statuses |\n"
            f"| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n"
            f"| {rss['start']:.0f} MB | {rss.get('middle', float('nan')):.0f} MB | {rss['end']:.0f} MB | "
            f"{peak:.0f} MB | {result.seconds:.0f} s | {CALLS / result.seconds:.0f} | "
            f"{lat[len(lat) // 2]:.0f} / {lat[int(len(lat) * 0.99)]:.0f} | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(codes.items()))} |")


def _one(pid: int, call) -> tuple[float, float, str]:
    """(seconds, peak RSS growth MB, status) of one call, peak RSS reset first."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = _rss_mb(pid)
    started = time.perf_counter()
    try:
        call()
        status = "OK"
    except grpc.RpcError as err:
        status = f"{err.code().name}: {err.details()[:90]}"
    return time.perf_counter() - started, _rss_mb(pid, "VmHWM") - before, status


def hostile_calls() -> str:
    rows = []
    captioner = ServiceProcess("services.captioning", {"SYN_TORCH_THREADS": str(THREADS)}).start()
    try:
        with grpc.insecure_channel(captioner.target, options=OPTIONS) as channel:
            stub = captioning_pb2_grpc.CaptioningStub(channel)
            cases = {**{k: v for k, (v, _) in hostile_inputs.images_past_the_limits().items()},
                     **hostile_inputs.images_at_the_limits()}
            for label, data in cases.items():
                seconds, grown, status = _one(captioner.process.pid, lambda: stub.Caption(
                    captioning_pb2.CaptionRequest(image=common_pb2.Image(data=data)), timeout=120))
                rows.append(("captioning.Caption", f"{label} ({len(data):,} B)", seconds, grown, status))
    finally:
        captioner.stop()
    audio = ServiceProcess("services.audio", {"SYN_TORCH_THREADS": str(THREADS)}).start()
    try:
        with grpc.insecure_channel(audio.target, options=OPTIONS) as channel:
            stub = audio_pb2_grpc.AudioStub(channel)
            for label, (make, _) in hostile_inputs.AUDIO_PAST_THE_LIMITS.items():
                data = make()
                seconds, grown, status = _one(audio.process.pid, lambda: stub.ExtractFeatures(
                    audio_pb2.ExtractFeaturesRequest(audio=common_pb2.AudioClip(encoded=data)), timeout=120))
                rows.append(("audio.ExtractFeatures", f"{label} ({len(data):,} B)", seconds, grown, status))
    finally:
        audio.stop()
    from services.gateway import pipeline
    from tests.gateway.test_pipeline_spec import _nested_aliases

    for label, spec in (("nested aliases (10^7 nodes)", _nested_aliases()),
                        ("20,000-deep nesting", "steps: " + "[" * 20_000 + "]" * 20_000)):
        started = time.perf_counter()
        try:
            pipeline.parse(spec, set())
            status = "OK"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            status = f"{getattr(exc, 'code', None) and exc.code.name}: {str(exc)[:90]}"
        rows.append(("gateway pipeline.parse", f"{label} ({len(spec):,} B)", time.perf_counter() - started,
                     float("nan"), status))
    lines = ["### Single hostile calls (peak RSS growth of the server during the call)", "",
             "| call | input | time | peak RSS growth | answer |", "| --- | --- | ---: | ---: | --- |"]
    lines += [f"| {c} | {i} | {s * 1000:.0f} ms | {'-' if g != g else f'{g:+.0f} MB'} | {a} |"
              for c, i, s, g, a in rows]
    return "\n".join(lines)


def extra_sections() -> list[str]:
    return [soak(), hostile_calls()]
