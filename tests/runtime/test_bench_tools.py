"""The peer benchmark's bookkeeping: its BENCHMARKS.md section is replaced in place (and survives the
service benchmarks), and the profiler files stacks under the right activity."""

from __future__ import annotations

from tests.benchmarks.peers import section
from tests.benchmarks.peers.profile import categorise


def test_the_peer_section_is_replaced_in_place_and_appended_when_missing(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## audio\n\nrows\n")
    start, end = section.markers()
    first = f"{start}\n## peers\n\nrun 1\n{end}"
    section.write(out, first)
    assert out.read_text().startswith("# Benchmarks\n\n## audio\n\nrows\n") and section.current(out.read_text()) == first
    out.write_text(out.read_text() + "\n## after\n")
    second = f"{start}\n## peers\n\nrun 2\n{end}"
    section.write(out, second)
    text = out.read_text()
    assert "run 1" not in text and section.current(text) == second and text.endswith("## after\n")
    assert section.current("# Benchmarks\n") == ""


def test_profiler_categories_follow_the_innermost_activity():
    worker = "Thread 7 (batch-captioning);_bootstrap (threading.py:1002);_work (services/runtime/batching.py:140)"
    assert categorise(worker + ";_run_batch (services/runtime/batching.py:180);beam_search (models/captioning/"
                               "decoding.py:120)") == "model"
    assert categorise(worker + ";_run_batch (x);_caption_batch (s);image_from_message (services/runtime/"
                               "images.py:50)") == "decode"
    assert categorise(worker + ";_run_batch (x);_prepare (services/captioning/servicer.py:98);warning_for ("
                               "models/shapesworld/world_check.py:192);_as_canvas (PIL/Image.py:1)") == "world check"
    assert categorise(worker + ";_next (services/runtime/batching.py:160);wait (threading.py:331)") == \
        "waiting for a batch"
    loop = "Thread 1 (MainThread);run (asyncio/runners.py:118);_run_once (asyncio/base_events.py:1898)"
    assert categorise(loop + ";select (selectors.py:468)") == "idle"
    assert categorise(loop + ";EpollSelector.select (selectors.py:468)") == "idle"
    assert categorise(loop + ";_run (asyncio/events.py:80);_handle (grpc/_cython/x)") == "gRPC/asyncio"


def test_the_shared_and_split_runs_keep_sections_of_their_own(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    shared_start, shared_end = section.markers(section.SHARED)
    split_start, split_end = section.markers(section.SPLIT)
    section.write(out, f"{shared_start}\nshared 1\n{shared_end}")
    section.write(out, f"{split_start}\nsplit 1\n{split_end}", section.SPLIT)
    section.write(out, f"{shared_start}\nshared 2\n{shared_end}")
    text = out.read_text()
    assert section.current(text) == f"{shared_start}\nshared 2\n{shared_end}"
    assert section.current(text, section.SPLIT) == f"{split_start}\nsplit 1\n{split_end}"
    assert "shared 1" not in text
    # What `make bench` writes back after its own sections: both, shared first.
    assert section.kept(text) == [f"{shared_start}\nshared 2\n{shared_end}", f"{split_start}\nsplit 1\n{split_end}"]
    assert section.kept("# Benchmarks\n") == []


def test_the_split_run_gives_the_servers_the_upper_half_of_the_cpus(tmp_path):
    import pytest

    from tests.benchmarks.peers.__main__ import Placement

    placement = Placement({0, 1, 2, 3})
    assert placement.servers == {2, 3} and placement.clients == {0, 1}
    assert Placement({4, 7}).servers == {7}
    with pytest.raises(SystemExit, match="at least 2 CPUs"):
        Placement({0})


def test_placement_moves_every_thread_of_the_process_and_new_threads_inherit_it():
    import os
    import threading

    from tests.benchmarks.peers.__main__ import Placement

    available = os.sched_getaffinity(0)
    if len(available) < 2:  # the split run refuses such a machine, as the previous test shows
        return
    started, release = threading.Event(), threading.Event()
    seen: dict[str, set[int]] = {}

    def older():  # a thread that exists before the move
        started.set()
        release.wait(10)
        seen["older"] = os.sched_getaffinity(0)

    thread = threading.Thread(target=older)
    thread.start()
    started.wait(10)
    placement = Placement(available)
    try:
        placement.to_clients()
        newer = threading.Thread(target=lambda: seen.setdefault("newer", os.sched_getaffinity(0)))
        newer.start()
        newer.join()
        release.set()
        thread.join()
        assert seen == {"older": placement.clients, "newer": placement.clients}
        assert os.sched_getaffinity(0) == placement.clients
    finally:
        Placement._move(os.getpid(), available)
    assert os.sched_getaffinity(0) == available


def test_a_partial_service_benchmark_run_replaces_only_its_own_sections():
    """`python -m tests.benchmarks --only gateway` keeps every other module's section and the peers'."""
    from tests.benchmarks.__main__ import merged

    start, end = section.markers()
    previous = (f"# Benchmarks\n\nMachine: old.\n\n## audio\n\naudio rows\n\n### sub\n\nmore\n\n"
                f"## gateway\n\nold hop\n\n## soak\n\nsoak rows\n\n{start}\n## peers\n\npeer rows\n{end}\n")
    sections = merged(previous, ["## gateway\n\nMeasured now.\n\nnew hop", "## new\n\nfresh"])
    assert [s.split("\n", 1)[0] for s in sections] == ["## audio", "## gateway", "## new", "## soak"]
    assert sections[0] == "## audio\n\naudio rows\n\n### sub\n\nmore"
    assert sections[1] == "## gateway\n\nMeasured now.\n\nnew hop" and "old hop" not in "".join(sections)
    assert not any("peer rows" in s for s in sections)  # the peers' sections are written back by section.kept


def test_a_timed_segment_counts_only_the_calls_that_finish_inside_its_window():
    """harness.drive_for: callers run through a warm-up and past the window's end, but only calls that
    finish inside the window count (successes as calls with latencies, gRPC failures as errors), and the
    window's hooks run at its two edges."""
    import threading
    import time

    import grpc

    from tests.benchmarks.harness import drive_for

    finished: list[tuple[float, bool]] = []
    lock = threading.Lock()
    edges: list[tuple[str, float]] = []

    class Refused(grpc.RpcError):
        pass

    def call(i: int) -> None:
        time.sleep(0.01)
        failed = i % 3 == 0
        with lock:
            finished.append((time.perf_counter(), failed))
        if failed:
            raise Refused()

    result = drive_for(call, 4, 0.3, warmup_s=0.2, on_window=lambda edge: edges.append((edge, time.perf_counter())))
    assert [edge for edge, _ in edges] == ["start", "end"]
    (_, start), (_, end) = edges
    inside = [failed for at, failed in finished if start <= at <= end]
    # The call notes its end a moment before the harness does, so a call at an edge may fall on either
    # side: at most one per caller and edge.
    assert result.calls > 0 and result.errors > 0
    assert abs(result.calls - inside.count(False)) <= 8 and abs(result.errors - inside.count(True)) <= 8
    assert len(finished) > len(inside) + 8  # the warm-up's calls ran and were not counted
    assert len(result.latencies_ms) == result.calls and all(ms >= 10 for ms in result.latencies_ms)
    assert 0.3 <= result.seconds <= end - start + 0.05


def test_the_peer_report_sets_the_default_row_and_the_peers_graph_row_against_the_fastest_peer():
    import datetime

    from tests.benchmarks.harness import LoadResult
    from tests.benchmarks.peers.__main__ import AS_LOADED, CONCURRENCIES, MODELS, System, report

    def system(name: str, rate: float) -> System:
        row = System(name, start=lambda _: {})
        for model in MODELS:
            row.results[model] = {c: LoadResult(c, int(rate * 10), 10.0, [5.0] * 10, 0) for c in CONCURRENCIES}
            row.cpu_s[model] = {c: 1.0 for c in CONCURRENCIES}
            row.client_cpu_s[model] = {c: 0.1 for c in CONCURRENCIES}
        return row

    live = [system("Synesthesia", 120.0), system(AS_LOADED, 90.0), system("Synesthesia, input warnings off", 130.0),
            system("TorchServe 0.12.0", 100.0), system("Triton (PyTriton 0.7.0)", 80.0)]
    text = report(live, {}, {m: [200.0] for m in MODELS}, "0.1", "0.2",
                  datetime.datetime(2026, 12, 5, tzinfo=datetime.timezone.utc))
    targets = [line for line in text.splitlines() if line.startswith("Targets: ")]
    assert len(targets) == len(MODELS)
    assert ("concurrency 32: Synesthesia / fastest peer 1.20 (1.30 with input warnings off; 0.90 with the network "
            "as loaded), service / in-process 0.60") in targets[0]
    assert f"| 32 | {AS_LOADED} | 900 | 90.0 |" in text
