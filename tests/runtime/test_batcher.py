"""DynamicBatcher in-process: batching, ordering, errors, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from services.runtime import DynamicBatcher, invalid_argument


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

    def record(items):
        sizes.append(len(items))
        time.sleep(0.02)
        return items

    async def main():
        # A one-minute window: any call that waited for it would hit the 10 s timeouts below.
        batcher = DynamicBatcher(record, max_batch_size=8, max_wait_ms=60_000, name="t6")
        alone = [await asyncio.wait_for(batcher.submit(f"alone{i}"), 10) for i in range(3)]
        burst = await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in range(16))), 10)
        await batcher.close()
        return alone, burst

    alone, burst = run(main())
    assert alone == ["alone0", "alone1", "alone2"] and burst == list(range(16))
    assert sizes == [1, 1, 1, 8, 8]


def test_an_error_reaches_every_caller_of_its_batch_and_the_batcher_goes_on():
    def picky(items):
        if any(x < 0 for x in items):
            raise invalid_argument("x", "negative")
        return items

    async def main():
        batcher = DynamicBatcher(picky, max_batch_size=4, max_wait_ms=30, name="t2")
        first = await asyncio.gather(batcher.submit(1), batcher.submit(-1), return_exceptions=True)
        second = await batcher.submit(5)
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
