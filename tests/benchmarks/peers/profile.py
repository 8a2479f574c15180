"""`python -m tests.benchmarks.peers.profile [--service captioning|embedding] [--concurrency 32]
[--seconds 20]`: where a captioning or embedding service process spends its time under load, sampled
with py-spy (its own environment, envs.py).

Starts the service (one torch thread, max batch 16, 5 ms), drives Caption (beam 3, no attention) or
EmbedImages (one picture) with 64x64 PNGs at the given concurrency, and samples every thread of the
server at 100 Hz, idle samples included. Prints, per thread, the share of samples in each activity:

- batch thread: model (beam_search or encode_images, and the network), world check (the built-ins'
  out-of-world warning, models/shapesworld/world_check.py), decode (image decoding and resizing),
  waiting for a batch (the worker's Condition.wait), handing results over, other;
- event loop (MainThread): gRPC/asyncio work, idle in the selector;
- gRPC and other threads.

A thread that is runnable but waiting for a core is sampled where it stands (not as idle), so on a
machine with more runnable threads than cores "model" includes time the model thread waited for a
core; the load average is printed with the table for that reason.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.benchmarks.harness import drive
from tests.benchmarks.peers import envs, work
from tests.benchmarks.peers.__main__ import synesthesia_calls
from tests.servers import ServiceProcess

CATEGORIES = [  # (category, any of these substrings in the stack), first match wins
    # The built-ins' out-of-world warning (it decodes nothing, but it used to hide under "other").
    ("world check", ("world_check.py",)),
    ("decode", ("image_from_message", "decode_image", "images_to_batch", "PIL/")),
    ("model", ("beam_search", "decoding.py", "network.py", "encode_images", "torch/nn")),
    ("hand-over", ("_deliver", "call_soon_threadsafe", "_settle")),
    ("waiting for a batch", ("_next (services/runtime/batching.py",)),
    ("idle", ()),  # the innermost frame is a blocking wait (selector, lock, queue)
    ("gRPC/asyncio", ("grpc", "asyncio", "servicer.py", "interceptors.py")),
]
# Innermost Python frames that block (in C below them): selectors, locks, idle executor workers and
# gRPC's completion-queue poller.
BLOCKING = ("select (", "poll (", "wait (", "_wait_for_tstate_lock", "get (queue.py", "acquire (",
            "_worker (concurrent/futures/thread.py", "_poll_wrapper (")


def categorise(stack: str) -> str:
    leaf = stack.rsplit(";", 1)[-1]
    for name, needles in CATEGORIES:
        if name == "idle":
            if leaf.startswith(BLOCKING) or any(f".{b}" in leaf for b in BLOCKING):
                return name
        elif any(n in stack for n in needles):
            return name
    return "other"


def profile(concurrency: int, seconds: float, service: str = "captioning", log=print) -> str:
    spy = envs.ensure("profile").parent / "py-spy"
    env = {"SYN_TORCH_THREADS": "1", "SYN_MAX_BATCH_SIZE": str(work.MAX_BATCH_SIZE),
           "SYN_MAX_BATCH_WAIT_MS": str(work.MAX_WAIT_MS),
           # The model thread beside the event loop, in the one process py-spy samples (the layout these
           # tables describe; auto would move the model into a worker process of its own).
           "SYN_MODEL_PROCESS": "false",
           # Its own index: a stack from `make up` may hold the checkout's.
           "SYN_EMBEDDING_INDEX_DIR": tempfile.mkdtemp(prefix="syn-profile-index-")}
    server = ServiceProcess(f"services.{service}", env).start(timeout_s=600)
    out = Path(tempfile.mkdtemp(prefix="syn-profile-")) / "stacks.txt"
    try:
        # The peer comparison's own requests and client (the 32 held-out scenes as PNG).
        call = synesthesia_calls(server.target, server.target, raw=False)[service]
        drive(call, concurrency, 2 * concurrency)  # warm
        stop = threading.Event()
        done = [0]

        def load():
            while not stop.is_set():
                done[0] += drive(call, concurrency, 4 * concurrency).calls

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(1.0)
        subprocess.run([str(spy), "record", "--pid", str(server.process.pid), "--duration", str(int(seconds)),
                        "--rate", "100", "--format", "raw", "--threads", "--idle", "--nonblocking", "-o", str(out)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop.set()
        loader.join()
    finally:
        server.stop()
    per_thread: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        thread = stack.split(";", 1)[0]
        name = ("batch thread" if "batch-" in thread or "_work (services/runtime/batching.py" in stack
                else "event loop" if "MainThread" in thread or "run_until_complete" in stack else "other threads")
        per_thread[name][categorise(stack)] += int(count)
    log(f"raw stacks: {out}")
    lines = [f"{service.capitalize()} service at concurrency {concurrency}, {seconds:.0f} s sampled at 100 Hz "
             f"with py-spy (idle included); load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} on "
             f"{os.cpu_count()} cores.", "",
             "| thread | samples | " + " | ".join(c for c, _ in CATEGORIES) + " | other |",
             "| --- | ---: | " + " | ".join("---:" for _ in CATEGORIES) + " | ---: |"]
    for name in ("batch thread", "event loop", "other threads"):
        counts = per_thread.get(name)
        if not counts:
            continue
        total = sum(counts.values())
        shares = [f"{100.0 * counts[c] / total:.0f}%" for c in [c for c, _ in CATEGORIES] + ["other"]]
        lines.append(f"| {name} | {total} | " + " | ".join(shares) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service", choices=("captioning", "embedding"), default="captioning")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(profile(args.concurrency, args.seconds, args.service))
    return 0


if __name__ == "__main__":
    sys.exit(main())
