"""Dynamic batching in the style of Triton's scheduler.

Concurrent calls each submit one item; a collector gathers up to
`max_batch_size` items, waiting at most `max_batch_wait_ms` after the first,
and runs the model function once for the whole batch in a dedicated worker
thread, so the event loop keeps accepting calls while the model runs.

The wait only pays off under load. When the last batch held a single item
and nothing else is queued, the caller is alone and is dispatched at once;
the next calls to arrive while it runs queue up and bring waiting back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from . import metrics

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


class DynamicBatcher(Generic[T, R]):
    """`await submit(item)` returns `fn([... item ...])[i]` for that item.

    `fn` takes a list of items and returns a list of results of the same
    length and order. An exception raised by `fn` is delivered to every caller
    in that batch; the batcher keeps running.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        name: str = "model",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self._fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(0.0, max_wait_ms) / 1000.0
        self.name = name
        # One worker: model calls are serialised, which is what a single device wants.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"batch-{name}")
        self._queue: asyncio.Queue[tuple[T, asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        self.forward_calls = 0
        self.items_processed = 0
        self._last_batch_size = 0

    def _ensure_started(self) -> asyncio.Queue:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")
        return self._queue

    async def submit(self, item: T) -> R:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._ensure_started().put((item, future))
        return await future

    async def run_now(self, items: list[T]) -> Sequence[R]:
        """Run `fn` on a caller-built batch in the model thread (warm-up, benchmarks)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, items)

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            alone = self._last_batch_size <= 1 and self._queue.empty()
            deadline = loop.time() + (0.0 if alone else self.max_wait_s)
            while len(batch) < self.max_batch_size:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    # Take what is already queued without waiting.
                    while len(batch) < self.max_batch_size and not self._queue.empty():
                        batch.append(self._queue.get_nowait())
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            # Callers that gave up (deadline, cancellation) need no forward pass.
            live = [(item, fut) for item, fut in batch if not fut.done()]
            if not live:
                continue
            items = [item for item, _ in live]
            self._last_batch_size = len(items)
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._call, items)
                if len(results) != len(items):
                    raise RuntimeError(f"{self.name}: batch of {len(items)} gave {len(results)} results")
            except BaseException as exc:  # delivered to each caller; the loop goes on
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            finally:
                metrics.BATCH_SIZE.labels(self.name).observe(len(items))
                metrics.BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)
            for (_, fut), result in zip(live, results):
                if not fut.done():
                    fut.set_result(result)

    def _call(self, items: list[T]) -> Sequence[R]:
        import torch  # here, so services without models (the gateway) never load torch

        self.forward_calls += 1
        self.items_processed += len(items)
        with torch.inference_mode():
            return self._fn(items)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._executor.shutdown(wait=True, cancel_futures=True)
