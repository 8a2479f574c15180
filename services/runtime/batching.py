"""Dynamic batching in the style of Triton's scheduler, formed off the event loop.

Concurrent calls each submit one item into a thread-safe queue; the model's
own worker thread takes its next batch from that queue itself (up to
`max_batch_size` items, waiting at most `max_batch_wait_ms` after the first),
runs the model function once for the whole batch and hands every result back
to the event loop in a single callback. The event loop only enqueues and
receives: it never forms batches, so a busy loop (waiting for a core on a
small machine) cannot leave the model idle between batches, and the loop is
woken once per batch rather than once per queue operation.

The wait only pays off under load. When the last batch held a single item
and nothing else is queued, the caller is alone and is dispatched at once;
the next calls to arrive while it runs queue up and bring waiting back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from . import calls, metrics

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Pending:
    """One queued caller: its item, the asyncio future it awaits and that future's loop."""

    item: object
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    # time.monotonic() when it was queued (queue-wait accounting, deadline checks).
    enqueued: float = field(default_factory=time.monotonic)
    # The RPC that submitted it (its log line gets the batch size), None outside a call.
    call: calls.Call | None = None


@dataclass(eq=False)
class _Direct:
    """A caller-built batch for run_now: runs as one forward pass, ahead of queued items."""

    items: list
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class _Stop(Exception):
    """Raised inside the worker to leave its loop on close()."""


class DynamicBatcher(Generic[T, R]):
    """`await submit(item)` returns `fn([... item ...])[i]` for that item.

    `fn` takes a list of items and returns a list of results of the same
    length and order; a result that is an exception is raised to its caller
    alone. An exception raised by `fn` is delivered to every caller in that
    batch; the batcher keeps running. `fn` runs in one dedicated worker
    thread (model calls are serialised, which is what a single device wants)
    under `torch.inference_mode()`.

    Metrics are labelled with the batcher's name and each item's model: the
    item's `model` attribute when it has one (a batcher shared by several
    models), else `model` (default: the batcher's name).
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        name: str = "model",
        model: str | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self._fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max(0.0, max_wait_ms) / 1000.0
        self.name = name
        self.model = model or name
        self._queue: collections.deque[_Pending] = collections.deque()
        self._direct: collections.deque[_Direct] = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._closed = False
        self.forward_calls = 0
        self.items_processed = 0
        self._last_batch_size = 0
        self._running = False
        # Read at scrape time, so the gauge is exact without updates from two threads.
        alive = weakref.ref(self)
        metrics.QUEUE_DEPTH.labels(name).set_function(lambda: len(b._queue) if (b := alive()) is not None else 0)

    # --- event-loop side --------------------------------------------------------------------

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        call = calls.current()
        if call is not None:
            calls.note_model(self._model_of(item))
        pending = _Pending(item, loop.create_future(), loop, call=call)
        self._enqueue(self._queue, pending)
        return await pending.future

    async def run_now(self, items: list[T]) -> Sequence[R]:
        """Run `fn` on a caller-built batch in the model thread (warm-up, benchmarks)."""
        loop = asyncio.get_running_loop()
        direct = _Direct(list(items), loop.create_future(), loop)
        self._enqueue(self._direct, direct)
        return await direct.future

    def put(self, item: T, answer, sink, call: calls.Call | None = None) -> None:
        """Queue an item from a thread without an event loop (a model's worker process reading its pipe).

        `answer` stands for the future (`done`, `cancel`, `set_result`, `set_exception`) and `sink` for
        its loop: the model thread calls `sink.call_soon_threadsafe(settle, outcomes)` once per batch,
        so a sink that settles at once answers a whole batch without an event loop in between."""
        self._enqueue(self._queue, _Pending(item, answer, sink, call=call))

    def put_direct(self, items: list[T], answer, sink) -> None:
        """`put` for a caller-built batch (run_now's counterpart)."""
        self._enqueue(self._direct, _Direct(list(items), answer, sink))

    @property
    def busy(self) -> bool:
        """Calls are queued or a batch is running (an explanation lane gives way to them)."""
        return self._running or bool(self._queue)

    def _model_of(self, item) -> str:
        return str(getattr(item, "model", "") or self.model)

    def queue_depth(self) -> int:
        """Callers queued and not yet taken into a batch."""
        return len(self._queue)

    def _enqueue(self, queue: collections.deque, entry) -> None:
        with self._ready:
            if self._closed:
                raise RuntimeError(f"batcher {self.name} is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=f"batch-{self.name}", daemon=True)
                self._thread.start()
            queue.append(entry)
            # Wake the worker only when it has something to do now: it is idle (this is the first
            # item), the batch it is collecting is full, or a run_now batch arrived. Items that
            # arrive within the window simply queue: no thread switch per call.
            if len(self._queue) in (1, self.max_batch_size) or queue is self._direct:
                self._ready.notify()

    async def close(self) -> None:
        """Stop the worker after its current batch; queued callers are cancelled."""
        if self._shut():
            await asyncio.to_thread(self._thread.join)

    def close_now(self) -> None:
        """`close` for a thread without an event loop (blocks until the current batch is done)."""
        if self._shut():
            self._thread.join()

    def _shut(self) -> bool:
        """Refuse new items and cancel the queued ones; whether there is a model thread to join."""
        with self._ready:
            self._closed = True
            left = list(self._queue) + list(self._direct)
            self._queue.clear()
            self._direct.clear()
            self._ready.notify_all()
        for entry in left:
            _deliver(entry.loop, [(entry.future, None, asyncio.CancelledError())])
        return self._thread is not None and self._thread is not threading.current_thread()

    # --- worker thread ----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                entry = self._next()
            except _Stop:
                return
            if isinstance(entry, _Direct):
                self._run_direct(entry)
            else:
                self._run_batch(entry)

    def _next(self) -> _Pending | _Direct | list[_Pending]:
        """Block for the next piece of work: a run_now batch, or a batch of queued callers."""
        with self._ready:
            while not self._queue and not self._direct:
                if self._closed:
                    raise _Stop
                self._ready.wait()
            if self._closed:
                raise _Stop
            if self._direct:
                return self._direct.popleft()
            alone = self._last_batch_size <= 1 and len(self._queue) == 1
            deadline = time.monotonic() + (0.0 if alone else self.max_wait_s)
            while len(self._queue) < self.max_batch_size and not self._closed and not self._direct:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                self._ready.wait(timeout)
            count = min(len(self._queue), self.max_batch_size)
            batch = [self._queue.popleft() for _ in range(count)]
            return batch

    def _run_direct(self, direct: _Direct) -> None:
        try:
            outcome = (direct.future, self._call(direct.items), None)
        except BaseException as exc:  # noqa: BLE001 - delivered to the caller
            outcome = (direct.future, None, exc)
        _deliver(direct.loop, [outcome])

    def _run_batch(self, batch: list[_Pending]) -> None:
        # Callers that gave up (deadline, cancellation) need no forward pass. Reading done() from
        # this thread is a plain attribute read; a caller cancelling right after is handled in _deliver.
        live = [p for p in batch if not p.future.done()]
        # Callers whose deadline passed while they queued are told so, without a forward pass.
        gone = [(p, p.call.problem(f"the {self.name} model ran")) for p in live if p.call is not None]
        gone = [(p, problem) for p, problem in gone if problem is not None]
        for p, problem in gone:
            _deliver(p.loop, [(p.future, None, problem)])
        if gone:
            dropped = {id(p) for p, _ in gone}
            live = [p for p in live if id(p) not in dropped]
        if not live:
            return
        items = [p.item for p in live]
        self._last_batch_size = len(items)
        taken = time.monotonic()
        per_model: dict[str, int] = {}
        waits: dict[str, object] = {}  # one labels() lookup per model and batch, not per item
        for p in live:
            model = self._model_of(p.item)
            per_model[model] = per_model.get(model, 0) + 1
            wait = waits.get(model) or waits.setdefault(model, metrics.QUEUE_WAIT_SECONDS.labels(self.name, model))
            wait.observe(taken - p.enqueued)
            if p.call is not None:
                p.call.batch_size = max(p.call.batch_size, len(items))
        started = time.perf_counter()
        try:
            results = self._call(items)
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: batch of {len(items)} gave {len(results)} results")
            # A result that is an exception concerns its item alone: raised to that caller only.
            outcomes = [(p.future, None, result) if isinstance(result, BaseException) else (p.future, result, None)
                        for p, result in zip(live, results)]
        except BaseException as exc:  # noqa: BLE001 - delivered to each caller; the worker goes on
            outcomes = [(p.future, None, exc) for p in live]
        finally:
            elapsed = time.perf_counter() - started
            for model, count in per_model.items():
                # Batch size per model: how many of this model's items shared the forward pass.
                metrics.BATCH_SIZE.labels(self.name, model).observe(count)
                metrics.BATCH_SECONDS.labels(self.name, model).observe(elapsed)
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for p, outcome in zip(live, outcomes):
            by_loop.setdefault(p.loop, []).append(outcome)
        for loop, loop_outcomes in by_loop.items():
            _deliver(loop, loop_outcomes)

    def _call(self, items: list[T]) -> Sequence[R]:
        self.forward_calls += 1
        self.items_processed += len(items)
        # Inference mode when the service uses torch; one without models (a test double) never pays
        # for importing it (seconds on a loaded machine).
        torch = sys.modules.get("torch")
        self._running = True
        try:
            with torch.inference_mode() if torch is not None else contextlib.nullcontext():
                return self._fn(items)
        finally:
            self._running = False


def _settle(outcomes: list[tuple[asyncio.Future, object, BaseException | None]]) -> None:
    for future, result, exc in outcomes:
        if future.done():  # cancelled while its batch ran
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        elif exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)


def _deliver(loop: asyncio.AbstractEventLoop, outcomes: list) -> None:
    """Hand a batch's outcomes to their event loop in one wake-up."""
    try:
        loop.call_soon_threadsafe(_settle, outcomes)
    except RuntimeError:  # that loop has closed: nobody is waiting any more
        log.debug("batcher result for a closed event loop dropped")
