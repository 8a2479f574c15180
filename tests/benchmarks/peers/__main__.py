"""`python -m tests.benchmarks.peers [--out BENCHMARKS.md] [--split]` (`make bench-peers`): Synesthesia against
Triton (PyTriton), TorchServe and Ray Serve on the same models, in one run, alternating systems.

Every system serves the built-in captioning checkpoint (beam 3, at most 20 words) and the built-in
embedding checkpoint (EmbedImages, one 64x64 PNG per call) with max batch 16 and a 5 ms batching
window, one model instance each, one torch intra-op thread (SYN_BENCH_THREADS). Each peer runs in its
own uv environment (envs.py) and computes work.py's functions; Synesthesia runs its real services.
One load generator (tests/benchmarks/harness.drive_for: `concurrency` threads of blocking gRPC stubs in
a closed loop, one channel per system) drives every system: for each concurrency, ROUNDS rounds, and in
each round every system gets one segment, the order rotating between rounds, so load from other work on
the machine falls on every side alike. A segment is WARMUP_S (1 s) of calls not counted, then a window
of SEGMENT_S (3 s): throughput is the calls that finish inside the windows over the windows' length,
and latencies are theirs. Server CPU is the user+system time of each server's whole process tree over
the windows, per call, and the load generator's CPU is its own process's over the same windows; peak
RSS is the sum of VmHWM over the server's tree (a page every process maps, such as torch's libraries,
counts once per process), PSS the largest proportional set size of the tree seen after a segment (each
shared page divided among the processes that map it: what the tree adds to the machine's memory).
Synesthesia's default row runs every setting at its default: with SYN_MODEL_PROCESS=auto each model
batches and runs in a worker process of its own where the service has two usable CPUs (as a peer's
Python backend or worker does), in the service process where it has one (the split run below); and
with SYN_CHANNELS_LAST=auto, on a CPU, the built-ins' batches run on a copy of the network with each
BatchNorm folded into its convolution, in NHWC (the same outputs within float rounding; the peers'
work.py runs the network as loaded, NCHW, eager). Its extra rows: raw pixels (the optional uint8 input
instead of PNG), input warnings off (without the built-ins' out-of-world check: the peers' function),
the network as loaded (SYN_CHANNELS_LAST=0: the peers' graph too), via gateway (one more hop), via the
gateway's nginx front (SYN_GATEWAY_FRONT_PORT: forwarded calls go from nginx straight upstream),
encoders compiled (SYN_TORCH_COMPILE=default, a switch the peers' eager work.py does not use), in the
service process (SYN_MODEL_PROCESS=false: the model thread beside the gRPC event loop); the targets are
read from the default row.

With `--split` (`make bench-peers` runs both) every server, ours and the peers' alike, with every
process and thread of its tree, runs on the upper half of the machine's CPUs and the load generator
on the rest; the in-process reference then runs on the servers' CPUs too. That run measures what a
server does with its cores when the callers' CPU is not taken from them, as on a real deployment
where the callers are other machines; the shared run is what one small machine does with both.

Environment: SYN_BENCH_PEERS (comma list among triton,torchserve,ray; default all),
SYN_BENCH_PEERS_ROUNDS (default 3), SYN_BENCH_PEERS_SEGMENT_S (default 3), SYN_BENCH_PEERS_WARMUP_S
(default 1), SYN_BENCH_PORT_BASE (first of 40 consecutive loopback ports;
default: free ports), SYN_PEERS_DIR (environments; default ~/.cache/synesthesia/peers).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import psutil

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.pictures import png_bytes
from synesthesia.tensors import from_tensor
from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2, embedding_pb2, embedding_pb2_grpc
from tests.benchmarks.harness import THREADS, LoadResult, drive_for, machine, torch_threads
from tests.benchmarks.peers import envs, protocols, section, work
from tests.servers import REPO_ROOT, ServiceProcess, free_port

HERE = Path(__file__).resolve().parent
MODELS = ("captioning", "embedding")
CONCURRENCIES = (1, 8, 32)
ROUNDS = int(os.environ.get("SYN_BENCH_PEERS_ROUNDS", "3"))
# Each segment: callers run WARMUP_S unmeasured, then SEGMENT_S measured (harness.drive_for). Fixed call
# counts of 24-128 made segments of 0.3-1.2 s, mostly ramp-up and drain: on one captioning service at
# concurrency 32, 128-call segments read 112-115/s where 1,024-call ones read 123-128/s.
SEGMENT_S = float(os.environ.get("SYN_BENCH_PEERS_SEGMENT_S", "3"))
WARMUP_S = float(os.environ.get("SYN_BENCH_PEERS_WARMUP_S", "1"))
SCENES = [render_scene(seed) for seed in EVAL_SEEDS[:32]]
PNGS = [png_bytes(s.image) for s in SCENES]
PIXELS = [np.ascontiguousarray(s.image, dtype=np.uint8) for s in SCENES]
OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


class Ports:
    """Loopback ports: consecutive from SYN_BENCH_PORT_BASE when set, else free ones."""

    def __init__(self) -> None:
        base = os.environ.get("SYN_BENCH_PORT_BASE")
        self._next = int(base) if base else None

    def take(self) -> int:
        if self._next is None:
            return free_port()
        while True:  # skip a port something else on the machine holds
            port, self._next = self._next, self._next + 1
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                    return port
                except OSError:
                    continue


class Placement:
    """Which CPUs the servers and the load generator run on (`--split`); None of it without the flag.

    On Linux an affinity belongs to a thread and a new thread or process inherits its creator's: so
    the whole benchmark process moves to the servers' CPUs while systems start (their processes and
    every thread they create later inherit them) and while the in-process reference runs, and to the
    load generator's CPUs while it drives calls; each started system's existing threads are moved too.
    """

    def __init__(self, available: set[int]) -> None:
        cpus = sorted(available)
        if len(cpus) < 2:
            raise SystemExit("--split needs at least 2 CPUs (servers on one half, the load generator on the other)")
        self.servers = set(cpus[len(cpus) // 2:])
        self.clients = set(cpus[:len(cpus) // 2])

    @staticmethod
    def _move(pid: int, cpus: set[int]) -> None:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(tid), cpus)

    def to_servers(self) -> None:
        self._move(os.getpid(), self.servers)

    def to_clients(self) -> None:
        self._move(os.getpid(), self.clients)

    def pin(self, system: "System") -> None:
        for proc in system.processes():
            with contextlib.suppress(OSError, psutil.Error):
                self._move(proc.pid, self.servers)

    def describe(self) -> str:
        return (f"servers (every process and thread of each system) and the in-process reference on CPU "
                f"{','.join(map(str, sorted(self.servers)))}, the load generator on CPU "
                f"{','.join(map(str, sorted(self.clients)))}")


@dataclass
class System:
    name: str
    # Called once; returns {model: call(i)} and registers what to stop.
    start: Callable[["System"], dict[str, Callable[[int], object]]]
    roots: list[psutil.Process] = field(default_factory=list)
    stops: list[Callable[[], None]] = field(default_factory=list)
    calls: dict[str, Callable[[int], object]] = field(default_factory=dict)
    # results[model][concurrency] -> merged LoadResult; cpu_s[model][concurrency]
    results: dict = field(default_factory=dict)
    cpu_s: dict = field(default_factory=dict)
    # The load generator's own CPU over this system's segments (the benchmark process), same keys.
    client_cpu_s: dict = field(default_factory=dict)
    agreement: dict = field(default_factory=dict)
    peak_rss_mb: float = float("nan")
    # The largest PSS of the tree at the end of its segments (sample_pss).
    peak_pss_mb: float = 0.0
    note: str = ""
    targets: dict[str, str] = field(default_factory=dict)

    def processes(self) -> list[psutil.Process]:
        found = []
        for root in self.roots:
            with contextlib.suppress(psutil.Error):
                found += [root, *root.children(recursive=True)]
        return found

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def _tree_mb(self, file: str, key: str) -> float:
        """The sum over the tree of one kB figure of /proc/<pid>/<file>, in MB."""
        total = 0.0
        for proc in self.processes():
            with contextlib.suppress(OSError, psutil.Error):
                for line in open(f"/proc/{proc.pid}/{file}"):
                    if line.startswith(key):
                        total += int(line.split()[1]) / 1024.0
                        break
        return total

    def peak_rss(self) -> float:
        return self._tree_mb("status", "VmHWM:")

    def sample_pss(self) -> None:
        """Keep the largest proportional set size of the tree seen so far: shared pages (the torch
        libraries every process of a tree maps) counted once, unlike a sum of RSS."""
        self.peak_pss_mb = max(self.peak_pss_mb, self._tree_mb("smaps_rollup", "Pss:"))

    def stop(self) -> None:
        # Ray's workers run in sessions of their own: whatever survives the stops is killed by pid.
        tree = self.processes()
        for stop in reversed(self.stops):
            with contextlib.suppress(Exception):
                stop()
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.kill()


def _popen(args: list[str], env: dict, log: Path, cwd: Path = REPO_ROOT, nice: int = 0) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=(lambda: os.nice(nice)) if nice else None)


def _renice(system: "System", value: int = 0) -> None:
    """Every thread of every process of `system` to priority `value` (on Linux a priority belongs to a
    thread: renicing a process leaves the threads it already started where they were)."""
    for proc in system.processes():
        with contextlib.suppress(psutil.Error, OSError):
            for thread in proc.threads():
                os.setpriority(os.PRIO_PROCESS, thread.id, value)


def _kill_group(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _peer_env(extra_path: list[str] = ()) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*extra_path, str(REPO_ROOT), str(REPO_ROOT / "clients")]),
           "SYN_TORCH_THREADS": str(THREADS), "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0",
           # Ray gives its agents 30 s to come up (RAY_agent_register_timeout_ms), too little on a loaded machine.
           "RAY_agent_register_timeout_ms": "600000",
           # ... and Serve its proxy 5 s to answer a readiness check (10 s a health check).
           "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "120", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60"}
    env.pop("VIRTUAL_ENV", None)
    return env


def _wait_until(what: str, probe: Callable[[], object], process: subprocess.Popen, log: Path,
                timeout_s: float = 600.0) -> None:
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            probe()
            return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
            time.sleep(1.0)
    raise TimeoutError(f"{what} not answering after {timeout_s}s ({last}):\n{log.read_text()[-3000:]}")


def _ready_calls(what: str, send, requests: dict, caption_of, vector_of, process, log: Path) -> dict:
    """{model: call(i)} sending requests[model][i % 32] through `send`, once both models answer."""
    def caption(i: int):
        return caption_of(send(requests["captioning"][i % len(PNGS)], timeout=300))

    def embed(i: int):
        return vector_of(send(requests["embedding"][i % len(PNGS)], timeout=300))

    for call in (caption, embed):
        _wait_until(what, lambda call=call: call(0), process, log)
    return {"captioning": caption, "embedding": embed}


def _channel(port: int) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS)


def synesthesia_calls(caption_target: str, embed_target: str, raw: bool) -> dict:
    """{model: call(i)}: Caption (beam 3, no attention) and EmbedImages (one picture) of the i-th of the
    32 scenes (PNG, or raw pixels with `raw`) against the given targets (also tests.benchmarks.peers.profile's
    load)."""
    caption_channel, embed_channel = grpc.insecure_channel(caption_target, options=OPTIONS), \
        grpc.insecure_channel(embed_target, options=OPTIONS)
    captioner = captioning_pb2_grpc.CaptioningStub(caption_channel)
    embedder = embedding_pb2_grpc.EmbeddingStub(embed_channel)

    def image(i: int) -> common_pb2.Image:
        if raw:
            pixels = PIXELS[i]
            return common_pb2.Image(pixels=common_pb2.RawPixels(
                data=pixels.tobytes(), height_px=pixels.shape[0], width_px=pixels.shape[1], channels=3))
        return common_pb2.Image(data=PNGS[i])

    caption_requests = [captioning_pb2.CaptionRequest(image=image(i), include_attention=False,
                                                      options=captioning_pb2.CaptionOptions(beam_size=work.BEAM_SIZE))
                        for i in range(len(SCENES))]
    embed_requests = [embedding_pb2.EmbedImagesRequest(images=[image(i)]) for i in range(len(SCENES))]

    def caption(i: int):
        reply = captioner.Caption(caption_requests[i % len(SCENES)], timeout=300)
        return reply.caption

    def embed(i: int):
        reply = embedder.EmbedImages(embed_requests[i % len(SCENES)], timeout=300)
        return from_tensor(reply.embeddings).ravel()

    return {"captioning": caption, "embedding": embed}


def start_synesthesia(raw: bool, ports: Ports, logs: Path, input_warnings: bool = True, compile_mode: str = "off",
                      model_process: str = "auto", layout: str = "auto"):
    """Our captioning and embedding services. `input_warnings=False` skips the built-ins' out-of-world
    check (SYN_INPUT_WARNINGS), so that row computes exactly what the peers' work.py computes;
    `compile_mode` is SYN_TORCH_COMPILE (torch.compile of the image encoders; the peers run work.py eager);
    `model_process` is SYN_MODEL_PROCESS (auto, true or false: each model's batches in a worker process of
    its own); `layout` is SYN_CHANNELS_LAST (auto: BatchNorm folded and NHWC on a CPU; 0: the network as
    loaded, as work.py runs it)."""
    def start(system: System) -> dict:
        env = {"SYN_TORCH_THREADS": str(THREADS), "SYN_MAX_BATCH_SIZE": str(work.MAX_BATCH_SIZE),
               "SYN_MAX_BATCH_WAIT_MS": str(work.MAX_WAIT_MS), "SYN_INPUT_WARNINGS": str(input_warnings).lower(),
               "SYN_TORCH_COMPILE": compile_mode, "SYN_MODEL_PROCESS": model_process, "SYN_CHANNELS_LAST": layout,
               "SYN_EMBEDDING_INDEX_DIR": tempfile.mkdtemp(prefix="syn-peers-index-")}
        servers = []
        for module in ("services.captioning", "services.embedding"):
            server = ServiceProcess(module, env, log_dir=logs, port=ports.take()).start(timeout_s=600)
            servers.append(server)
            system.roots.append(psutil.Process(server.process.pid))
            system.stops.append(server.stop)
        system.targets = {"captioning": servers[0].target, "embedding": servers[1].target}
        return synesthesia_calls(servers[0].target, servers[1].target, raw)

    return start


FRONT = "Synesthesia via the gateway's nginx front (SYN_GATEWAY_FRONT_PORT)"
IN_THREAD = "Synesthesia, in the service process (SYN_MODEL_PROCESS=false)"
AS_LOADED = "Synesthesia, the network as loaded (SYN_CHANNELS_LAST=0: no BatchNorm folding, NCHW)"


def start_gateway(upstream: System, ports: Ports, logs: Path, front: bool = False):
    """The gateway in front of `upstream`'s captioning and embedding processes, forwarding their own RPCs
    (raw bytes both ways); its CPU and RSS include those upstream processes. With `front`, the calls go
    to its nginx front (SYN_GATEWAY_FRONT_PORT), which sends them straight upstream; nginx is the
    gateway's child, so its CPU and RSS are counted too."""
    def start(system: System) -> dict:
        if not upstream.targets:
            raise RuntimeError(f"{upstream.name} did not start")
        env = {f"SYN_{name.upper()}_TARGET": target for name, target in upstream.targets.items()}
        front_port = ports.take() if front else 0
        if front:
            env["SYN_GATEWAY_FRONT_PORT"] = str(front_port)
        gateway = ServiceProcess("services.gateway", env, log_dir=logs, port=ports.take()).start(wait=False)
        system.roots += [psutil.Process(gateway.process.pid), *upstream.roots]
        system.stops.append(gateway.stop)
        target = f"127.0.0.1:{front_port}" if front else gateway.target
        calls = synesthesia_calls(target, target, raw=False)
        for call in calls.values():
            _wait_until("gateway", lambda call=call: call(0), gateway.process, gateway.log_path, timeout_s=300)
        return calls

    return start


def start_triton(ports: Ports, logs: Path):
    def start(system: System) -> dict:
        python = envs.ensure("triton")
        grpc_port, http_port, metrics_port = ports.take(), ports.take(), ports.take()
        env = _peer_env()
        # Workaround: PyTriton's Python-backend stub links the system libpython3.11 (Debian's 3.11.2) while
        # the environment's standard library is the interpreter's own (3.11.7); their _thread modules differ
        # and multiprocessing fails in the stub. The interpreter's own libpython first on the library path
        # makes the stub load the matching one.
        libdir = Path(sys.base_prefix) / "lib"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libdir), env.get("LD_LIBRARY_PATH", "")) if p)
        log = logs / "triton.log"
        process = _popen([str(python), str(HERE / "triton_server.py"), str(grpc_port), str(http_port),
                          str(metrics_port)], env, log)
        system.roots.append(psutil.Process(process.pid))
        system.stops.append(lambda: _kill_group(process))
        request_cls, response_cls = protocols.triton(python)
        infer = protocols.unary(_channel(grpc_port), protocols.TRITON_INFER, request_cls, response_cls)
        requests = {}
        for model in MODELS:
            requests[model] = []
            for png in PNGS:
                request = request_cls(model_name=model)
                request.inputs.add(name="image", datatype="BYTES", shape=[1, 1])
                request.raw_input_contents.append(struct.pack("<I", len(png)) + png)
                requests[model].append(request)
        # BYTES outputs carry a 4-byte length prefix; FP32 outputs are the raw little-endian values.
        return _ready_calls("tritonserver", infer, requests, lambda reply: reply.raw_output_contents[0][4:].decode(),
                            lambda reply: np.frombuffer(reply.raw_output_contents[0], dtype=np.float32), process, log)

    return start


def start_torchserve(ports: Ports, logs: Path):
    def start(system: System) -> dict:
        python = envs.ensure("torchserve")
        ports_ = {k: ports.take() for k in ("inference", "management", "metrics", "grpc", "grpc_management")}
        home = Path(tempfile.mkdtemp(prefix="syn-torchserve-"))
        store = home / "model-store"
        store.mkdir()
        for model in MODELS:
            # The archiver copies the handler file as named, so each model gets a one-line module whose
            # `handle` (TorchServe's default entry point) is that model's function in torchserve_handler.
            handler = home / f"{model}_handler.py"
            handler.write_text(f"from tests.benchmarks.peers.torchserve_handler import {model} as handle\n")
            subprocess.run([str(python.parent / "torch-model-archiver"), "--model-name", model, "--version", "1.0",
                            "--handler", str(handler), "--export-path", str(store),
                            "--archive-format", "no-archive", "--force"], check=True, env=_peer_env())
        config = home / "config.properties"
        config.write_text("\n".join([
            f"inference_address=http://127.0.0.1:{ports_['inference']}",
            f"management_address=http://127.0.0.1:{ports_['management']}",
            f"metrics_address=http://127.0.0.1:{ports_['metrics']}",
            "grpc_inference_address=127.0.0.1", f"grpc_inference_port={ports_['grpc']}",
            "grpc_management_address=127.0.0.1", f"grpc_management_port={ports_['grpc_management']}",
            f"model_store={store}", "disable_token_authorization=true", "enable_model_api=true",
            "default_workers_per_model=1", "install_py_dep_per_model=false", "disable_system_metrics=false",
            "job_queue_size=1000", ""]))
        env = _peer_env()
        env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"
        log = logs / "torchserve.log"
        process = _popen([str(python.parent / "torchserve"), "--start", "--foreground", "--ncs",
                          "--model-store", str(store), "--ts-config", str(config), "--disable-token-auth"],
                         env, log, cwd=home)
        system.roots.append(psutil.Process(process.pid))
        system.stops.append(lambda: _kill_group(process))
        management = f"http://127.0.0.1:{ports_['management']}"
        _wait_until("torchserve", lambda: urllib.request.urlopen(f"{management}/models", timeout=5).read(),
                    process, log)
        for model in MODELS:
            query = urllib.parse.urlencode({"url": model, "batch_size": work.MAX_BATCH_SIZE,
                                            "max_batch_delay": work.MAX_WAIT_MS, "initial_workers": 1,
                                            "synchronous": "true", "response_timeout": 300})
            urllib.request.urlopen(urllib.request.Request(f"{management}/models?{query}", method="POST"),
                                   timeout=600).read()
        request_cls, response_cls = protocols.torchserve(python)
        predict = protocols.unary(_channel(ports_["grpc"]), protocols.TORCHSERVE_PREDICT, request_cls, response_cls)
        requests = {m: [request_cls(model_name=m, input={"data": png}) for png in PNGS] for m in MODELS}
        return _ready_calls("torchserve", predict, requests, lambda reply: json.loads(reply.prediction)["caption"],
                            lambda reply: np.frombuffer(reply.prediction, dtype=np.float32), process, log)

    return start


def start_ray(ports: Ports, logs: Path):
    def start(system: System) -> dict:
        python = envs.ensure("ray")
        grpc_port, http_port = ports.take(), ports.take()
        agent_ports = [str(ports.take()) for _ in range(4)]
        env = _peer_env([str(HERE / "ray_site")])
        log = logs / "ray.log"
        # Workaround: Ray's raylet aborts when its Python agents take more than 15 s to start, which they do
        # on a loaded 2-core machine; the cluster starts at a raised priority (root only) and every
        # process of it is reset to the default priority before anything is measured.
        process = _popen([str(python), str(HERE / "ray_server.py"), str(grpc_port), str(http_port), *agent_ports],
                         env, log, nice=-10 if os.geteuid() == 0 else 0)
        system.roots.append(psutil.Process(process.pid))
        system.stops.append(lambda: _kill_group(process, 60))
        channel = _channel(grpc_port)
        captioner = captioning_pb2_grpc.CaptioningStub(channel)
        embedder = embedding_pb2_grpc.EmbeddingStub(channel)
        caption_requests = [captioning_pb2.CaptionRequest(image=common_pb2.Image(data=p)) for p in PNGS]
        embed_requests = [embedding_pb2.EmbedImagesRequest(images=[common_pb2.Image(data=p)]) for p in PNGS]

        def caption(i: int):
            return captioner.Caption(caption_requests[i % len(PNGS)], timeout=300,
                                     metadata=(("application", "captioning"),)).caption

        def embed(i: int):
            reply = embedder.EmbedImages(embed_requests[i % len(PNGS)], timeout=300,
                                         metadata=(("application", "embedding"),))
            return from_tensor(reply.embeddings).ravel()

        for call in (caption, embed):
            _wait_until("ray serve", lambda call=call: call(0), process, log)
        _renice(system, 0)
        return {"captioning": caption, "embedding": embed}

    return start


def in_process_rates(captioner: work.Captioning, embedder: work.Embedding) -> dict[str, float]:
    """Items/s of work.py's functions called directly on batches of 16 PNGs (decode included)."""
    rates = {}
    for model, fn in (("captioning", captioner), ("embedding", embedder)):
        batch = PNGS[:work.MAX_BATCH_SIZE]
        fn(batch)
        count, started = 0, time.perf_counter()
        while count < 3 or time.perf_counter() - started < 0.5:
            fn(batch)
            count += 1
        rates[model] = count * len(batch) / (time.perf_counter() - started)
    return rates


def merge(a: LoadResult | None, b: LoadResult) -> LoadResult:
    if a is None:
        return b
    return LoadResult(a.concurrency, a.calls + b.calls, a.seconds + b.seconds, a.latencies_ms + b.latencies_ms,
                      a.errors + b.errors)


def check_agreement(system: System, reference: dict) -> None:
    """How many of the 32 scenes give the in-process answer (caption text; embedding within 1e-4)."""
    for model in MODELS:
        same = 0
        for i in range(len(SCENES)):
            try:
                got = system.calls[model](i)
            except grpc.RpcError:
                continue
            expected = reference[model][i]
            same += (got == expected) if model == "captioning" else bool(
                np.allclose(np.asarray(got).ravel(), expected, atol=1e-4))
        system.agreement[model] = same


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def versions() -> dict[str, str]:
    found = {}
    for peer, package in (("triton", "nvidia-pytriton"), ("torchserve", "torchserve"), ("ray", "ray")):
        text = (HERE / f"requirements-{peer}.txt").read_text()
        match = re.search(rf"^{re.escape(package)}(?:\[\w+\])?==(\S+)", text, re.M)
        found[peer] = match.group(1) if match else "?"
    return found


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _cpu_at_edges(system: System, edges: dict[str, tuple[float, float]]) -> Callable[[str], None]:
    """drive_for's window hook: the server tree's and the load generator's CPU seconds at each edge."""
    def snapshot(edge: str) -> None:
        edges[edge] = (system.cpu_seconds(), _own_cpu_seconds())
    return snapshot


def run(peers: list[str], log=print, placement: Placement | None = None) -> str:
    logs = Path(tempfile.mkdtemp(prefix="syn-bench-peers-"))
    ports = Ports()
    v = versions()
    ours = System("Synesthesia", start_synesthesia(False, ports, logs))
    systems = [ours, System("Synesthesia, raw pixels", start_synesthesia(True, ports, logs)),
               System("Synesthesia, input warnings off", start_synesthesia(False, ports, logs, input_warnings=False)),
               System(AS_LOADED, start_synesthesia(False, ports, logs, layout="0")),
               System("Synesthesia via gateway", start_gateway(ours, ports, logs)),
               System(FRONT, start_gateway(ours, ports, logs, front=True)),
               # A switch a user has (services/runtime/acceleration.py), not what the peers compute: the
               # targets are read from the default row.
               System("Synesthesia, encoders compiled (SYN_TORCH_COMPILE=default)",
                      start_synesthesia(False, ports, logs, compile_mode="default")),
               System(IN_THREAD, start_synesthesia(False, ports, logs, model_process="false"))]
    labels = {"triton": f"Triton (PyTriton {v['triton']})", "torchserve": f"TorchServe {v['torchserve']}",
              "ray": f"Ray Serve {v['ray']}"}
    starters = {"triton": start_triton, "torchserve": start_torchserve, "ray": start_ray}
    failures: dict[str, str] = {}
    if placement:
        placement.to_servers()
    with torch_threads(THREADS):
        captioner, embedder = work.Captioning(), work.Embedding()
        reference = {"captioning": [text for text, _ in captioner(PNGS)], "embedding": list(embedder(PNGS))}
    load_before = load_average()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    live: list[System] = []
    try:
        for system in systems + [System(labels[p], starters[p](ports, logs)) for p in peers]:
            log(f"[peers] starting {system.name}")
            try:
                system.calls = system.start(system)
                if placement:
                    placement.pin(system)
                check_agreement(system, reference)
                live.append(system)
            except Exception as exc:  # noqa: BLE001 - reported in the table, the others still run
                failures[system.name] = f"{type(exc).__name__}: {str(exc)[-1500:]}"
                log(f"[peers] {system.name} failed to start: {failures[system.name]}")
                system.stop()
        in_process: dict[str, list[float]] = {m: [] for m in MODELS}
        for concurrency in CONCURRENCIES:
            for round_ in range(ROUNDS):
                if placement:
                    placement.to_servers()
                with torch_threads(THREADS):
                    for model, rate in in_process_rates(captioner, embedder).items():
                        in_process[model].append(rate)
                if placement:
                    placement.to_clients()
                order = live[round_ % len(live):] + live[:round_ % len(live)]
                for model in MODELS:
                    for system in order:
                        edges: dict[str, tuple[float, float]] = {}
                        result = drive_for(system.calls[model], concurrency, SEGMENT_S, WARMUP_S,
                                           _cpu_at_edges(system, edges))
                        system.sample_pss()
                        spent = edges["end"][0] - edges["start"][0]
                        system.client_cpu_s.setdefault(model, {}).setdefault(concurrency, 0.0)
                        system.client_cpu_s[model][concurrency] += edges["end"][1] - edges["start"][1]
                        system.results.setdefault(model, {})[concurrency] = merge(
                            system.results.get(model, {}).get(concurrency), result)
                        system.cpu_s.setdefault(model, {}).setdefault(concurrency, 0.0)
                        system.cpu_s[model][concurrency] += spent
                        log(f"  c={concurrency} r={round_} {model} {system.name}: "
                            f"{result.throughput(1):.1f}/s p50={result.percentile(0.5):.1f}ms errors={result.errors}")
    finally:
        for system in live:  # before any stops: the gateway's tree includes the upstream processes
            system.peak_rss_mb = system.peak_rss()
        for system in live:
            system.stop()
    load_after = load_average()
    return report(live, failures, in_process, load_before, load_after, started_at, placement)


def report(live: list[System], failures: dict, in_process: dict, load_before: str, load_after: str,
           started_at: datetime.datetime, placement: Placement | None = None) -> str:
    ours = next((s for s in live if s.name == "Synesthesia"), None)
    start, end = section.markers(section.SPLIT if placement else section.SHARED)
    heading = "## peers, servers and load generator on separate CPUs" if placement else "## peers"
    # The split run's section refers to the shared one's description instead of repeating it.
    about = ("As in the section above, except where the processes run: " + placement.describe() + "."
             if placement else (__doc__ or "").split("\n\n", 1)[1].strip())
    lines = [start, heading, "", about, "",
             f"Run {started_at:%Y-%m-%d %H:%M} UTC, {ROUNDS} rounds of {WARMUP_S:g} s + {SEGMENT_S:g} s segments; "
             f"load average (1, 5, 15 min) before {load_before}, after {load_after}; {machine(THREADS)} "
             "everywhere.", ""]
    for model in MODELS:
        rates = in_process.get(model) or []
        best = max(rates) if rates else float("nan")
        what = ("captions (beam 3, <= 20 words) per second" if model == "captioning"
                else "128-d image embeddings per second")
        lines += [f"### {model}: {what}", "",
                  f"In-process reference (work.py on batches of 16 PNGs, decode included, same run): "
                  f"{best:.1f}/s (best of {len(rates)} measurements).", "",
                  "| concurrency | system | calls | throughput /s | p50 ms | p99 ms | errors | server CPU ms/call "
                  "| load generator CPU ms/call | peak RSS MB | PSS MB | agrees (of 32) | Synesthesia / system "
                  "| system / in-process |",
                  "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for concurrency in CONCURRENCIES:
            ours_rate = ours.results[model][concurrency].throughput(1) if ours else float("nan")
            for system in live:
                result = system.results.get(model, {}).get(concurrency)
                if result is None:
                    continue
                rate = result.throughput(1)
                cpu = 1000.0 * system.cpu_s[model][concurrency] / max(1, result.calls)
                client_cpu = 1000.0 * system.client_cpu_s[model][concurrency] / max(1, result.calls)
                lines.append(
                    f"| {concurrency} | {system.name} | {result.calls} | {rate:.1f} | {result.percentile(0.5):.1f} | "
                    f"{result.percentile(0.99):.1f} | {result.errors} | {cpu:.1f} | {client_cpu:.1f} | "
                    f"{system.peak_rss_mb:.0f} | {system.peak_pss_mb:.0f} | "
                    f"{system.agreement.get(model, 0)} | {ours_rate / rate if rate else float('nan'):.2f} | "
                    f"{rate / best:.2f} |")
        lines.append("")
        gateway = next((s for s in live if s.name == "Synesthesia via gateway"), None)
        front = next((s for s in live if s.name == FRONT), None)
        # Rows that compute the peers' function (no out-of-world check) or run the peers' graph (the
        # network as loaded): their ratios to the fastest peer go beside the default row's.
        variants = [(label, row) for label, name in (("with input warnings off", "Synesthesia, input warnings off"),
                                                        ("with the network as loaded", AS_LOADED))
                    if (row := next((s for s in live if s.name == name), None))]
        peers = [s for s in live if not s.name.startswith("Synesthesia")]
        if ours:
            checks = []
            for concurrency in CONCURRENCIES:
                mine = ours.results[model][concurrency]
                ratios = [mine.throughput(1) / p.results[model][concurrency].throughput(1) for p in peers
                          if p.results.get(model, {}).get(concurrency)]
                same = ""
                if ratios:
                    fastest = max(p.results[model][concurrency].throughput(1) for p in peers
                                  if p.results.get(model, {}).get(concurrency))
                    shown = [f"{v.results[model][concurrency].throughput(1) / fastest:.2f} {label}"
                             for label, v in variants if v.results.get(model, {}).get(concurrency)]
                    same = f" ({'; '.join(shown)})" if shown else ""
                # The hop at concurrency 1 only (the target's): with callers queueing, a p50 difference
                # between two segments measures the queue, not the hop.
                hop = "".join(
                    f", {label} hop {via.results[model][1].percentile(0.5) - mine.percentile(0.5):+.1f} ms p50"
                    for label, via in (("gateway", gateway), ("nginx front", front))
                    if concurrency == 1 and via and via.results.get(model, {}).get(1))
                checks.append(f"concurrency {concurrency}: Synesthesia / fastest peer "
                              f"{min(ratios) if ratios else float('nan'):.2f}{same}, service / in-process "
                              f"{mine.throughput(1) / best:.2f}{hop}")
            lines += ["Targets: " + "; ".join(checks) + ".", ""]
    if failures:
        lines += ["### Systems that did not run", ""]
        lines += [f"- {name}: `{why.strip().splitlines()[-1] if why.strip() else why}`" for name, why in failures.items()]
        lines.append("")
    lines.append(end)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="BENCHMARKS.md")
    parser.add_argument("--peers", default=os.environ.get("SYN_BENCH_PEERS", ",".join(envs.PEERS)))
    parser.add_argument("--split", action="store_true",
                        help="servers on the upper half of the CPUs, the load generator on the rest (own section)")
    args = parser.parse_args()
    placement = Placement(os.sched_getaffinity(0)) if args.split else None
    os.environ.setdefault("SYN_TORCH_THREADS", str(THREADS))
    # A terminated run still stops every server it started (the finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    peers = [p for p in args.peers.split(",") if p]
    text = run(peers, placement=placement)
    section.write(Path(args.out), text, section.SPLIT if placement else section.SHARED)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
