"""`python -m tests.benchmarks.peers.convoy [--seconds 3]`: what another busy Python thread in the
same process costs the model thread, against the same busy loop in another process.

A service's model thread shares its process, and so the GIL, with the asyncio event loop that runs
gRPC. torch, PIL and numpy release the GIL inside each operation and take it back after; when the other
thread holds it then, the model thread waits until that thread blocks (the loop in its selector) or
until the interpreter's switch interval (5 ms) makes it let go. The model thread here runs work.py's
functions on batches of 16 held-out PNGs with one torch thread (what the peer comparison's in-process
reference runs); the other thread is busy `duty` of every millisecond (the event loop of a service at
concurrency 32 is busy about 30% of the time) and sleeps the rest. The same loop in a process of its
own (what Triton's Python backend and TorchServe do: the model in a worker process, the front end
elsewhere) shares no GIL with the model and, with a core to each, costs it nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import threading
import time

from tests.benchmarks.harness import torch_threads
from tests.benchmarks.peers import work
from tests.benchmarks.peers.__main__ import PNGS

DUTIES = (0.1, 0.3, 0.5, 1.0)


def busy(duty: float, stop) -> None:
    """Busy `duty` of every millisecond in pure Python (it holds the GIL), asleep for the rest."""
    while not stop.is_set():
        started = time.perf_counter()
        while time.perf_counter() - started < duty * 1e-3:
            pass
        if duty < 1.0:
            time.sleep((1.0 - duty) * 1e-3)


def rate(fn, seconds: float) -> float:
    batch = PNGS[:work.MAX_BATCH_SIZE]
    count, started = 0, time.perf_counter()
    while count < 2 or time.perf_counter() - started < seconds:
        fn(batch)
        count += 1
    return count * len(batch) / (time.perf_counter() - started)


def with_other(fn, seconds: float, duty: float, process: bool) -> float:
    stop = multiprocessing.Event() if process else threading.Event()
    other = (multiprocessing.get_context("fork").Process if process else threading.Thread)(
        target=busy, args=(duty, stop), daemon=True)
    other.start()
    try:
        return rate(fn, seconds)
    finally:
        stop.set()
        other.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}; items/s of "
          f"work.py on batches of 16, one torch thread; medians of {args.rounds} rounds, each measuring the "
          "model alone, then with the thread, then with the process, so that the machine's drift falls on "
          "the ratios (to the same round's 'alone') as little as it can\n")
    print("| model | other work busy | alone | with it in the same process (thread) | with it in another process |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with torch_threads(1):
        for name, fn in (("captioning", work.Captioning()), ("embedding", work.Embedding())):
            fn(PNGS[:work.MAX_BATCH_SIZE])
            for duty in DUTIES:
                rounds = []
                for _ in range(args.rounds):
                    alone = rate(fn, args.seconds)
                    rounds.append((alone, with_other(fn, args.seconds, duty, process=False) / alone,
                                   with_other(fn, args.seconds, duty, process=True) / alone))
                alone, thread, process = (statistics.median(column) for column in zip(*rounds))
                print(f"| {name} | {duty:.0%} of each ms | {alone:.0f} | {thread:.2f} of alone | "
                      f"{process:.2f} of alone |")


if __name__ == "__main__":
    main()
