"""The peer benchmark's bookkeeping: its BENCHMARKS.md section is replaced in place (and survives the
service benchmarks), and the profiler files stacks under the right activity."""

from __future__ import annotations

from tests.benchmarks.peers import section
from tests.benchmarks.peers.profile import categorise


def test_the_peer_section_is_replaced_in_place_and_appended_when_missing(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## audio\n\nrows\n")
    first = f"{section.START}\n## peers\n\nrun 1\n{section.END}"
    section.write(out, first)
    assert out.read_text().startswith("# Benchmarks\n\n## audio\n\nrows\n") and section.current(out.read_text()) == first
    out.write_text(out.read_text() + "\n## after\n")
    second = f"{section.START}\n## peers\n\nrun 2\n{section.END}"
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
