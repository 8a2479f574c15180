"""The benchmark harness behind `make bench`.

A benchmark module `tests/benchmarks/<name>.py` defines `SCENARIOS`, a list of
`Scenario`, and optionally `extra_sections() -> list[str]` (markdown for
comparisons that are not service-vs-in-process, such as STFT vs librosa).

For each scenario the harness starts the real service on a loopback port,
drives it with a bounded number of calls at each concurrency (1, 8, 32 by
default) from a thread pool of synchronous stubs, and records throughput,
p50/p99 latency and the server's peak RSS (VmHWM). In the same run it calls
the model in-process at each batch size of `batch_sizes` and keeps the best
throughput, so the report can say how much of the model's speed the service
delivers.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import torch

from tests.servers import ServiceProcess

# Intra-op threads for the servers (passed on as SYN_TORCH_THREADS) and the in-process column alike, so
# "service / in-process" compares like with like. One by default: on a small shared machine more threads
# mostly measure contention (two threads contending with other work were measured 10-100x slower).
THREADS = int(os.environ.get("SYN_BENCH_THREADS", "1"))


def machine(threads: int | None = None) -> str:
    """CPU, cores, memory, GPU, Python, torch and threads: what a benchmark section was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GiB RAM, GPU: {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {threads or torch.get_num_threads()} intra-op thread(s)")


@contextlib.contextmanager
def torch_threads(count: int = THREADS):
    """Run the block with `count` torch intra-op threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Scenario:
    # Row label, e.g. "captioning.Caption".
    name: str
    # Module started as the server, e.g. "services.captioning".
    module: str
    # make_call(channel) -> call(i) performing one RPC (i = call index, to vary inputs).
    make_call: Callable[[grpc.Channel], Callable[[int], object]]
    # Items (images, captions, seconds of audio...) one call processes.
    items_per_call: float = 1.0
    unit: str = "items"
    env: dict = field(default_factory=dict)
    # in_process() -> run(batch_size) performing one model call on batch_size items.
    in_process: Callable[[], Callable[[int], object]] | None = None
    batch_sizes: tuple[int, ...] = (1, 4, 16, 32)
    concurrencies: tuple[int, ...] = (1, 8, 32)
    # Bounded work: calls per concurrency level = max(min_calls, calls_per_worker * concurrency).
    min_calls: int = 24
    calls_per_worker: int = 4
    warmup_calls: int = 3


@dataclass
class LoadResult:
    concurrency: int
    calls: int
    seconds: float
    latencies_ms: list[float]
    errors: int

    def throughput(self, items_per_call: float) -> float:
        return self.calls * items_per_call / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@dataclass
class ScenarioResult:
    scenario: Scenario
    loads: list[LoadResult]
    peak_rss_mb: float
    in_process_best: tuple[int, float] | None  # (batch size, items/s)


def peak_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def drive(call: Callable[[int], object], concurrency: int, calls: int) -> LoadResult:
    latencies: list[float] = []
    errors = 0

    def one(i: int) -> float:
        started = time.perf_counter()
        call(i)
        return (time.perf_counter() - started) * 1000.0

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(one, i) for i in range(calls)]:
            try:
                latencies.append(future.result())
            except grpc.RpcError:
                errors += 1
    return LoadResult(concurrency, calls, time.perf_counter() - started, latencies, errors)


def drive_for(call: Callable[[int], object], concurrency: int, seconds: float, warmup_s: float = 1.0,
              on_window: Callable[[str], None] | None = None) -> LoadResult:
    """A closed loop of `concurrency` callers for `warmup_s` + `seconds`, measured over the last `seconds`.

    Unlike `drive` (a fixed number of calls), the window excludes the start, where callers ramp up and
    a server's first batches are partial, and the end, where the last callers drain alone: only calls
    that finish inside the window count, and the window's length is the divisor. `on_window("start")`
    and `on_window("end")` run in the calling thread at its edges (CPU snapshots); the callers run on
    past the end until their call returns, uncounted.
    """
    stop = threading.Event()
    indices = itertools.count()
    window: list[float] = []  # [start, end] once reached (perf_counter)
    done: list[tuple[float, float, bool]] = []  # (finished at, latency ms, failed), appended by callers

    def caller() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                call(next(indices))
                failed = False
            except grpc.RpcError:
                failed = True
            finished = time.perf_counter()
            done.append((finished, (finished - started) * 1000.0, failed))

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(warmup_s)
        if on_window:
            on_window("start")
        window.append(time.perf_counter())
        time.sleep(seconds)
        window.append(time.perf_counter())
        if on_window:
            on_window("end")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    inside = [(latency, failed) for finished, latency, failed in done if window[0] <= finished <= window[1]]
    return LoadResult(concurrency, sum(not failed for _, failed in inside), window[1] - window[0],
                      [latency for latency, failed in inside if not failed], sum(failed for _, failed in inside))


def measure_in_process(scenario: Scenario, min_seconds: float = 1.0) -> tuple[int, float] | None:
    if scenario.in_process is None:
        return None
    run = scenario.in_process()
    best: tuple[int, float] | None = None
    for batch in scenario.batch_sizes:
        run(batch)  # warm-up: allocator, kernels, caches
        count, started = 0, time.perf_counter()
        while True:
            run(batch)
            count += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds and count >= 2:
                break
        rate = count * batch * scenario.items_per_call / elapsed
        if best is None or rate > best[1]:
            best = (batch, rate)
    return best


def run_scenario(scenario: Scenario, log=print) -> ScenarioResult:
    # The server and the in-process column use the same intra-op threads, so their ratio is like for like.
    env = {"SYN_TORCH_THREADS": str(torch.get_num_threads()), **scenario.env}
    server = ServiceProcess(scenario.module, env).start()
    try:
        options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
        with grpc.insecure_channel(server.target, options=options) as channel:
            call = scenario.make_call(channel)
            for i in range(scenario.warmup_calls):
                call(i)
            loads = []
            for concurrency in scenario.concurrencies:
                calls = max(scenario.min_calls, scenario.calls_per_worker * concurrency)
                result = drive(call, concurrency, calls)
                log(f"  {scenario.name} c={concurrency}: {result.throughput(scenario.items_per_call):.1f} "
                    f"{scenario.unit}/s p50={result.percentile(0.5):.1f}ms p99={result.percentile(0.99):.1f}ms")
                loads.append(result)
        rss = peak_rss_mb(server.process.pid)
    finally:
        server.stop()
    best = measure_in_process(scenario)
    if best:
        log(f"  {scenario.name} in-process: {best[1]:.1f} {scenario.unit}/s at batch {best[0]}")
    return ScenarioResult(scenario, loads, rss, best)


def markdown_table(results: list[ScenarioResult]) -> str:
    lines = [
        "| scenario | concurrency | calls | throughput | p50 ms | p99 ms | errors | server peak RSS MB "
        "| in-process best (batch) | service / in-process |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        s = r.scenario
        for load in r.loads:
            rate = load.throughput(s.items_per_call)
            if r.in_process_best:
                best = f"{r.in_process_best[1]:.1f} {s.unit}/s ({r.in_process_best[0]})"
                ratio = f"{rate / r.in_process_best[1]:.2f}"
            else:
                best, ratio = "n/a", "n/a"
            lines.append(
                f"| {s.name} | {load.concurrency} | {load.calls} | {rate:.1f} {s.unit}/s | "
                f"{load.percentile(0.5):.1f} | {load.percentile(0.99):.1f} | {load.errors} | {r.peak_rss_mb:.0f} | "
                f"{best} | {ratio} |"
            )
    return "\n".join(lines)


def summarise(latencies_ms: list[float]) -> tuple[float, float]:
    """(p50, p99) of a list of latencies, for modules' extra sections."""
    ordered = sorted(latencies_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
