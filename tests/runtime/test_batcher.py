"""DynamicBatcher in-process: batching, ordering, errors, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from services.runtime import DynamicBatcher, invalid_argument
from tests.runtime.helpers import wait_until


def gated(answer=lambda items: items):
    """A batch function that sets `started`, waits for `release` (10 s at most), then answers `answer(items)`:
    holds the batcher's worker in a pass while a test queues behind it."""
    started, release = threading.Event(), threading.Event()

    def forward(items):
        started.set()
        release.wait(10)
        return answer(items)

    return forward, started, release


def run(coro):
    return asyncio.run(coro)


def test_concurrent_submits_share_forward_passes_and_keep_order():
    sizes = []

    def double(items):
        sizes.append(len(items))
        time.sleep(0.05)
        return [2 * x for x in items]

    async def main():
        batcher = DynamicBatcher(double, max_batch_size=8, max_wait_ms=50, name="t1")
        results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
        await batcher.close()
        return results, batcher.forward_calls

    results, calls = run(main())
    assert results == [2 * i for i in range(20)]
    assert max(sizes) <= 8 and sum(sizes) == 20
    assert calls == len(sizes) <= 4


def test_a_lone_caller_is_not_held_for_the_window_and_load_brings_the_wait_back():
    sizes = []
    busy = threading.Event()

    def record(items):
        sizes.append(len(items))
        if "slow" in items:
            busy.set()
            time.sleep(0.2)
        return items

    async def main():
        # A one-minute window: any call that waited for it would hit the 10 s timeouts below.
        batcher = DynamicBatcher(record, max_batch_size=8, max_wait_ms=60_000, name="t6")
        alone = [await asyncio.wait_for(batcher.submit(f"alone{i}"), 10) for i in range(3)]
        # Sixteen calls arriving while a lone call runs: two full batches, taken without waiting.
        slow = asyncio.ensure_future(batcher.submit("slow"))
        assert await asyncio.to_thread(busy.wait, 10)
        burst = await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in range(16))), 10)
        await slow
        await batcher.close()
        return alone, burst

    alone, burst = run(main())
    assert alone == ["alone0", "alone1", "alone2"] and burst == list(range(16))
    assert sizes == [1, 1, 1, 1, 8, 8]


def test_the_worker_forms_batches_while_the_event_loop_is_blocked():
    def slow_double(items):
        time.sleep(0.01)
        return [2 * x for x in items]

    async def main():
        batcher = DynamicBatcher(slow_double, max_batch_size=4, max_wait_ms=0, name="t7")
        tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(12)]
        await asyncio.sleep(0)  # every task has queued its item
        # Block the loop (no await) until the worker has run every batch: it takes each next
        # batch itself, so nothing on the loop is needed between forward passes.
        give_up = time.monotonic() + 30
        while batcher.items_processed < 12 and time.monotonic() < give_up:
            time.sleep(0.005)
        processed_while_blocked = batcher.items_processed
        results = await asyncio.gather(*tasks)
        await batcher.close()
        return processed_while_blocked, results, batcher.forward_calls

    processed, results, calls = run(main())
    assert processed == 12
    assert results == [2 * i for i in range(12)]
    assert calls >= 3


def test_run_now_runs_a_caller_built_batch_in_the_worker_thread():
    threads = []

    def names(items):
        threads.append(threading.current_thread().name)
        return [f"{x}!" for x in items]

    async def main():
        batcher = DynamicBatcher(names, max_batch_size=2, name="t8")
        direct = await batcher.run_now(["a", "b", "c"])
        queued = await batcher.submit("d")
        await batcher.close()
        return direct, queued

    assert run(main()) == (["a!", "b!", "c!"], "d!")
    assert threads == ["batch-t8", "batch-t8"]


def test_close_cancels_queued_callers_and_refuses_new_ones():
    held, started, release = gated()

    async def main():
        batcher = DynamicBatcher(held, max_batch_size=1, max_wait_ms=0, name="t9")
        running = asyncio.ensure_future(batcher.submit("running"))
        assert await asyncio.to_thread(started.wait, 10)
        queued = asyncio.ensure_future(batcher.submit("queued"))
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0.05)
        release.set()
        await closing
        with pytest.raises(RuntimeError):
            await batcher.submit("late")
        return await running, await asyncio.gather(queued, return_exceptions=True)

    first, (queued,) = run(main())
    assert first == "running"
    assert isinstance(queued, asyncio.CancelledError)


def test_an_error_reaches_every_caller_of_its_batch_and_the_batcher_goes_on():
    started, release = threading.Event(), threading.Event()

    def picky(items):
        if "hold" in items:  # keeps the worker busy so the next two calls queue together
            started.set()
            release.wait(10)
            return items
        if any(x < 0 for x in items):
            raise invalid_argument("x", "negative")
        return items

    async def main():
        batcher = DynamicBatcher(picky, max_batch_size=4, max_wait_ms=30, name="t2")
        hold = asyncio.ensure_future(batcher.submit("hold"))
        assert await asyncio.to_thread(started.wait, 10)
        pair = asyncio.gather(batcher.submit(1), batcher.submit(-1), return_exceptions=True)
        await asyncio.sleep(0.01)
        release.set()
        first = await pair
        second = await batcher.submit(5)
        await hold
        await batcher.close()
        return first, second

    first, second = run(main())
    assert all(isinstance(r, Exception) and "negative" in str(r) for r in first)
    assert second == 5


def test_a_batch_returning_the_wrong_count_is_an_error_not_a_mixup():
    async def main():
        batcher = DynamicBatcher(lambda items: items[:-1], max_batch_size=4, max_wait_ms=20, name="t3")
        out = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
        await batcher.close()
        return out

    assert all(isinstance(r, RuntimeError) for r in run(main()))


def test_cancelled_callers_are_skipped():
    seen = []
    running = threading.Event()  # the first pass has started in the worker
    release = threading.Event()  # the test lets it finish once the doomed caller has cancelled

    def record(items):
        seen.extend(items)
        running.set()
        release.wait(10)
        return items

    async def main():
        batcher = DynamicBatcher(record, max_batch_size=1, max_wait_ms=0, name="t4")
        blocker = asyncio.create_task(batcher.submit("first"))
        assert await asyncio.to_thread(running.wait, 10)
        doomed = asyncio.create_task(batcher.submit("cancelled"))
        await asyncio.sleep(0)  # let it queue behind the running pass
        doomed.cancel()
        release.set()
        assert await blocker == "first"
        assert await batcher.submit("last") == "last"
        await batcher.close()

    run(main())
    assert seen == ["first", "last"]


def test_inference_mode_is_on_in_the_worker():
    import torch

    async def main():
        batcher = DynamicBatcher(lambda items: [torch.is_inference_mode_enabled() for _ in items], name="t5")
        out = await batcher.submit(0)
        await batcher.close()
        return out

    assert run(main()) is True


@pytest.mark.parametrize("size", [0, -1])
def test_batch_size_must_be_positive(size):
    with pytest.raises(ValueError):
        DynamicBatcher(lambda items: items, max_batch_size=size)


class _Answer:
    """A future stand-in, as a model worker process gives `put` (services/runtime/model_process.py)."""

    def __init__(self) -> None:
        self.outcome = None

    def done(self) -> bool:
        return self.outcome is not None

    def cancel(self) -> None:
        self.outcome = ("cancelled", None)

    def set_result(self, value) -> None:
        self.outcome = ("result", value)

    def set_exception(self, exc) -> None:
        self.outcome = ("error", exc)


class _Sink:
    """Settles each batch's outcomes at once, in the model thread, and records each hand-over."""

    def __init__(self) -> None:
        self.handovers: list[int] = []

    def call_soon_threadsafe(self, settle, outcomes) -> None:
        settle(outcomes)
        self.handovers.append(len(outcomes))


def test_put_from_a_thread_without_a_loop_batches_and_settles_each_batch_in_one_hand_over():
    double, started, release = gated(lambda items: [ValueError("odd") if x % 2 else 2 * x for x in items])
    batcher = DynamicBatcher(double, max_batch_size=4, max_wait_ms=200, name="put")
    sink, answers = _Sink(), [_Answer() for _ in range(8)]
    batcher.put(0, answers[0], sink)
    assert started.wait(10)  # the first item runs alone; the next seven queue behind it
    for i, answer in enumerate(answers[1:], 1):
        batcher.put(i, answer, sink)
    direct = _Answer()
    batcher.put_direct([10, 20], direct, sink)
    release.set()
    wait_until(lambda: all(a.done() for a in answers + [direct]), 10, "every answer settled")
    assert [a.outcome[1] for a in answers if a.outcome[0] == "result"] == [0, 4, 8, 12]
    assert [str(a.outcome[1]) for a in answers if a.outcome[0] == "error"] == ["odd"] * 4
    assert direct.outcome == ("result", [20, 40])
    # Each batch's outcomes reach the sink together: the lone first item, the run_now batch, then
    # the seven queued items as a full batch of four and the three left when the window closed.
    assert sorted(sink.handovers) == [1, 1, 3, 4]
    assert batcher.forward_calls == 4
    batcher.close_now()


def test_close_now_cancels_what_is_queued_and_refuses_more():
    slow, started, release = gated()
    batcher = DynamicBatcher(slow, max_batch_size=1, max_wait_ms=0, name="put-close")
    sink, running, queued = _Sink(), _Answer(), _Answer()
    batcher.put("a", running, sink)
    assert started.wait(10)
    batcher.put("b", queued, sink)
    closer = threading.Thread(target=batcher.close_now)
    closer.start()
    wait_until(queued.done, 10, "the queued item cancelled")
    assert queued.outcome[0] == "cancelled"
    release.set()
    closer.join(10)
    assert not closer.is_alive() and running.outcome == ("result", "a")
    with pytest.raises(RuntimeError, match="closed"):
        batcher.put("c", _Answer(), sink)
