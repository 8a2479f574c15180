"""SYN_MODEL_PROCESS: each model batches and runs in a worker process of its own.

Why: a service's model thread and its gRPC event loop share one interpreter, so one GIL. A small
model spends much of a batch in Python between torch operations (beam search, preparing tensors),
and while it does the loop waits, and the other way round: measured, a service uses about one core
of two however many calls queue (docs/performance.md, "One process, one GIL"). With the model in a
process of its own the front end's gRPC work and the model run at the same time, as with Triton's
Python backend or a TorchServe worker.

How: the service still loads every model itself (ListModels, explanations, pictures too big to
decode inside a batch, and the self-test use it). Each model's worker process then builds the same
servicer from the same settings, loads only that model, passes the same self-test and reports
ready before the service may report SERVING. The worker owns the model's DynamicBatcher: each call's
item goes to it through a pipe as soon as it arrives, and the worker's main thread, which does
nothing but read the pipe, queues it, so batches are formed next to the model and never wait for the
service's GIL (a first version kept the batcher in the service and sent whole batches: the hand-over
waited on the busy event loop and the model sat idle 12% of the time; a second ran an asyncio loop in
the worker, whose per-item tasks and wake-ups took the GIL from the model thread). The model thread
sends each batch's answers itself. The worker runs the servicer's very batch function, so what is
served is what in-thread serving computes. Each call's deadline and cancellation travel with its
item, so the worker's batcher drops items nobody waits for, as in-thread; the batch metrics it
records are replayed into the service's own Prometheus registry.

Items are dataclasses. A field holding a callable (StreamCaption's settled-word callback) cannot
cross a process: it is left out, and in the worker a stand-in sends each call back, to be made by
the service's reader thread. Fields the batch function fills for the caller (the picture's size, its
warnings) are marked `field(metadata=SET_IN_BATCH)` and copied back onto the caller's item before its
call resumes (a list in place, since a caller may hold it); nothing else comes back (the prepared
pixels of a 64 px picture would cost 0.3 ms per call to pickle and unpickle).

Costs: the model's weights twice in memory (once per process), a process start (imports, load,
self-test: seconds) per model at warm-up, and pickling each item and result. A worker that exits
fails the calls it held with UNAVAILABLE naming SYN_MODEL_PROCESS and is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

from . import calls, metrics
from .errors import unavailable
from .settings import Settings

log = logging.getLogger(__name__)

# Service -> worker: ("item", id, item, callback names, deadline, request id, method) | ("cancel", id) |
# ("direct", id, items) | None (stop). Worker -> service: ("ready", None) | ("error", text) |
# ("call", id, name, args) | ("done", [(id, failed, value, changes, batch size), ...], observations).
READY, ERROR, CALL, DONE = "ready", "error", "call", "done"
ITEM, CANCEL, DIRECT = "item", "cancel", "direct"
# The batcher metrics the worker records and the service replays (metrics.py names).
REPLAYED = ("BATCH_SIZE", "BATCH_SECONDS", "QUEUE_WAIT_SECONDS")
# Field metadata of an item field the batch function fills for the caller: copied back from a worker.
SET_IN_BATCH = {"set_in_batch": True}


def usable_cpus(root: Path = Path("/")) -> float:
    """CPUs this process may use: its affinity, lowered by a cgroup CPU quota (a container's or a
    Kubernetes pod's `limits.cpu`, which leaves the affinity at every CPU of the node)."""
    # sched_getaffinity is Linux's (where the services run); elsewhere every CPU counts.
    count = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return count
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0":  # cgroup v2: cpu.max ("max 100000" or "<quota> <period>") here and above
            folder = root / "sys/fs/cgroup" / path.lstrip("/")
            while True:
                count = min(count, _quota(folder / "cpu.max"))
                if folder == root / "sys/fs/cgroup":
                    break
                folder = folder.parent
        elif "cpu" in controllers.split(","):  # cgroup v1
            base = root / "sys/fs/cgroup" / controllers
            for folder in (base / path.lstrip("/"), base):
                count = min(count, _quota(folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us"))
    return count


def _quota(path: Path, period_path: Path | None = None) -> float:
    try:
        if period_path is None:
            quota, period = path.read_text().split()
        else:
            quota, period = path.read_text().strip(), period_path.read_text().strip()
    except (OSError, ValueError):
        return float("inf")
    if quota in ("max", "-1"):
        return float("inf")
    return int(quota) / int(period)


def wanted(mode: str, device, cpus: Callable[[], float] = usable_cpus) -> tuple[bool, str]:
    """SYN_MODEL_PROCESS: whether this service's models run in worker processes, and why (logged).

    auto is on only where it was measured to pay (docs/performance.md): a CPU device with two or more
    usable CPUs, where the model and the gRPC front end each get a core instead of taking turns on one
    GIL. With one CPU there is no second core to gain and the hand-over only costs; on a GPU the model
    thread mostly waits for kernels, and a worker would hold a second CUDA context and copy of the
    weights, unmeasured here."""
    if mode in ("true", "false"):
        return mode == "true", f"SYN_MODEL_PROCESS={mode}: models run {_WHERE[mode == 'true']}"
    if getattr(device, "type", str(device)) != "cpu":
        return False, f"SYN_MODEL_PROCESS=auto: models run {_WHERE[False]} (the device is {device}, not a CPU)"
    usable = cpus()
    use = usable >= 2
    return use, f"SYN_MODEL_PROCESS=auto: models run {_WHERE[use]} ({usable:g} usable CPUs; auto needs 2)"


_WHERE = {True: "in a worker process each", False: "in the service process"}


def _set_in_batch(item) -> list[str]:
    if not dataclasses.is_dataclass(item):
        return []
    return [f.name for f in dataclasses.fields(item) if f.metadata.get("set_in_batch")]


def _copy_back(item, values: dict) -> None:
    for name, value in values.items():
        current = getattr(item, name)
        if isinstance(current, list) and isinstance(value, list):
            current[:] = value  # the caller may hold this very list (embedding's warnings)
        else:
            setattr(item, name, value)


def _callable_fields(item) -> dict[str, Callable]:
    if not dataclasses.is_dataclass(item):
        return {}
    return {f.name: value for f in dataclasses.fields(item) if callable(value := getattr(item, f.name))}


@dataclasses.dataclass(eq=False)
class _Waiting:
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    item: object
    callbacks: dict[str, Callable]
    call: calls.Call | None


class WorkerProcess:
    """One model's worker process, with DynamicBatcher's interface (`submit`, `run_now`, `busy`, `close`).

    A worker that exits (killed, out of memory, a library's crash on some input) fails the calls it
    held with UNAVAILABLE and is started again, as a TorchServe worker is; until it is ready, calls get
    UNAVAILABLE at once. Restarts back off (at once, then 1, 2, 4 ... 30 s) while new workers keep failing
    to start or exit within a minute (an input that crashes the model each time costs a process start
    at most every 30 s, not a loop of them).
    """

    def __init__(self, service: str, servicer: object, forward: Callable, settings: Settings, model: str) -> None:
        self.service = service
        self.model = model
        self.name = f"{service}:{model}"
        self.servicer_class = f"{type(servicer).__module__}:{type(servicer).__qualname__}"
        self.forward_name = forward.__name__
        self.settings = settings
        self._conn = None
        self._process = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._waiting: dict[int, _Waiting] = {}
        self._ids = itertools.count()
        self._gone: str = ""  # why calls cannot be taken now; empty while the worker is ready
        self._closing = False
        self.restarts = 0  # since a worker last ran for a minute: the backoff
        self._started_at = 0.0
        self._launched = None  # (pipe, process) between launch() and wait_ready()
        alive = weakref.ref(self)
        # Items sent to the worker and not answered yet (the worker's own queue is not visible from here).
        metrics.QUEUE_DEPTH.labels(self.name).set_function(lambda: len(w._waiting) if (w := alive()) else 0)

    # --- life -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and wait until its model is loaded and self-tested (blocking: call in a thread)."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the worker process without waiting for it: a service with several models starts them
        all, then waits for each (`wait_ready`), so their imports and loads overlap."""
        # spawn, not fork: a fork would copy the service's gRPC and asyncio threads mid-state and, on a
        # GPU, its CUDA context.
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=_worker_main, name=f"model-{self.model}", daemon=True,
                                  args=(theirs, self.service, self.servicer_class, self.forward_name,
                                        self.settings, self.model))
        process.start()
        theirs.close()
        self._launched = (ours, process)

    def abandon(self) -> None:
        """Kill a worker launched and not yet ready (another model's worker failed to start)."""
        if self._launched is not None:
            ours, process = self._launched
            self._launched = None
            ours.close()
            process.kill()
            process.join()

    def wait_ready(self) -> None:
        """Wait until the launched worker has loaded and self-tested its model; raise if it failed."""
        ours, process = self._launched
        self._launched = None
        try:
            kind, payload = ours.recv()
        except (EOFError, OSError):
            process.join(timeout=5)
            kind, payload = ERROR, f"it exited with code {process.exitcode}"
        if kind != READY:
            ours.close()
            _stop(process)
            raise RuntimeError(f"model {self.model!r}: its worker process (SYN_MODEL_PROCESS) did not start: "
                               f"{payload}")
        self._conn, self._process = ours, process
        self._reader = threading.Thread(target=self._read, args=(ours, process), name=f"worker-{self.model}",
                                        daemon=True)
        self._reader.start()
        self._started_at = time.monotonic()
        self._gone = ""
        log.info("%s: model %s runs in worker process %d (SYN_MODEL_PROCESS)", self.service, self.model, process.pid)

    def _restart(self) -> None:
        while not self._closing:
            time.sleep(min(30.0, 2.0 ** (self.restarts - 1)) if self.restarts else 0.0)
            self.restarts += 1
            try:
                self.start()
                return
            except Exception:  # noqa: BLE001 - logged; the next try backs off
                log.exception("%s: model %s: restarting its worker process failed", self.service, self.model)

    def close_now(self) -> None:
        """Stop the worker (blocking): it finishes its batch; calls still waiting are cancelled."""
        self._closing = True
        self._gone = f"the {self.service} service is stopping"
        if self._conn is not None:
            with self._send_lock, contextlib.suppress(OSError, ValueError):
                self._conn.send(None)
        if self._process is not None:
            _stop(self._process)
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=10)
        self._fail_all(asyncio.CancelledError())

    async def close(self) -> None:
        await asyncio.to_thread(self.close_now)

    # --- the service's side -----------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Calls are with the worker (an explanation lane gives way to them)."""
        return bool(self._waiting)

    async def submit(self, item):
        loop = asyncio.get_running_loop()
        call = calls.current()
        if call is not None:
            calls.note_model(self.model)
        callbacks = _callable_fields(item)
        portable = dataclasses.replace(item, **dict.fromkeys(callbacks)) if callbacks else item
        key = next(self._ids)
        waiting = _Waiting(loop.create_future(), loop, item, callbacks, call)
        self._send(key, waiting, (ITEM, key, portable, list(callbacks), call.deadline if call else None,
                                  call.request_id if call else "", call.method if call else ""))
        waiting.future.add_done_callback(lambda f: f.cancelled() and self._cancel(key))
        return await waiting.future

    async def run_now(self, items: list) -> Sequence:
        """A caller-built batch as one forward pass in the worker (warm-up, benchmarks)."""
        loop = asyncio.get_running_loop()
        key = next(self._ids)
        waiting = _Waiting(loop.create_future(), loop, None, {}, None)
        self._send(key, waiting, (DIRECT, key, list(items)))
        return await waiting.future

    def _cancel(self, key: int) -> None:
        if self._waiting.pop(key, None) is not None and not self._gone:
            with self._send_lock, contextlib.suppress(OSError, ValueError):
                self._conn.send((CANCEL, key))

    def _send(self, key: int, waiting: _Waiting, message) -> None:
        if self._gone:
            raise unavailable(self._gone)
        # pickle.dumps and send_bytes, not Connection.send: its ForkingPickler copies copyreg's dispatch
        # table for every message, and an item needs none of its reducers (12.2 against 6.9 us to
        # pickle an embedding item with a 12 kB PNG; 51 against 39 us with the pipe write). Pickled
        # before the call is registered: one that cannot be pickled fails alone and leaves nothing behind.
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        self._waiting[key] = waiting
        try:
            with self._send_lock:
                self._conn.send_bytes(data)
        except (OSError, ValueError) as exc:
            # The worker is gone; its reader thread fails what it held and restarts it.
            self._waiting.pop(key, None)
            raise unavailable(f"the worker process of model {self.model!r} (SYN_MODEL_PROCESS) has exited; "
                              f"it is being restarted") from exc

    def _fail_all(self, exc: BaseException) -> None:
        left, self._waiting = list(self._waiting.values()), {}
        for waiting in left:
            _settle_soon(waiting.loop, [(waiting.future, None, exc)])

    def _read(self, conn, process) -> None:
        """The reader thread: results back onto their callers' items and loops, metrics replayed."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == CALL:
                _, key, name, args = message
                waiting = self._waiting.get(key)
                callback = waiting.callbacks.get(name) if waiting is not None else None
                if callback is not None:
                    callback(*args)
                continue
            _, answers, observations = message
            for metric, labels, value in observations:
                getattr(metrics, metric).labels(*labels).observe(value)
            by_loop: dict[asyncio.AbstractEventLoop, list] = {}
            for key, failed, value, changes, batch_size in answers:
                waiting = self._waiting.pop(key, None)
                if waiting is None:  # cancelled meanwhile
                    continue
                _copy_back(waiting.item, changes)
                if waiting.call is not None:
                    waiting.call.batch_size = max(waiting.call.batch_size, batch_size)
                outcome = (waiting.future, None, value) if failed else (waiting.future, value, None)
                by_loop.setdefault(waiting.loop, []).append(outcome)
            for loop, outcomes in by_loop.items():
                _settle_soon(loop, outcomes)
        if self._closing:
            return
        process.join(timeout=5)  # reap it: its exit code goes into the message, and no zombie stays
        self._gone = (f"the worker process of model {self.model!r} (SYN_MODEL_PROCESS) exited with code "
                      f"{process.exitcode}; it is being restarted")
        log.error("%s: %s", self.service, self._gone)
        self._fail_all(unavailable(self._gone))
        if time.monotonic() - self._started_at > 60:
            self.restarts = 0
        self._restart()


def _stop(process) -> None:
    process.join(timeout=10)
    if process.is_alive():
        process.kill()
        process.join()


def _settle_soon(loop: asyncio.AbstractEventLoop, outcomes: list) -> None:
    from .batching import _deliver

    _deliver(loop, outcomes)


# --- the worker process -----------------------------------------------------------------------------


class _Recorder:
    """Stands in for a batcher histogram in the worker: observations go back with the answers."""

    def __init__(self, metric: str, outbox: list) -> None:
        self.metric, self.outbox = metric, outbox

    def labels(self, *labels):
        return _Observer(self.metric, labels, self.outbox)


@dataclasses.dataclass
class _Observer:
    metric: str
    labels: tuple
    outbox: list

    def observe(self, value: float) -> None:
        self.outbox.append((self.metric, self.labels, value))


def _worker_main(conn, service: str, servicer_class: str, forward_name: str, settings: Settings, model: str) -> None:
    from . import logs
    from .server import bound_threads

    # The service stops its workers itself, after its drain (a SIGTERM to the whole process group would
    # otherwise end them mid-drain); a service that dies closes the pipe, and the worker leaves.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    logs.configure(f"{service}:{model}", settings.log_level, settings.log_format)
    try:
        module, _, name = servicer_class.partition(":")
        servicer = getattr(importlib.import_module(module), name)(settings)
        # After the import: bound_threads sets the pools of the libraries already loaded (torch, FAISS).
        bound_threads(settings.torch_threads)
        registry = servicer.models
        registry.load(only=model)
        registry.self_test()
        served = registry.models[model]
    except BaseException as exc:  # noqa: BLE001 - reported to the service, which stops start-up
        conn.send((ERROR, f"{type(exc).__name__}: {exc}"))
        return
    conn.send((READY, None))
    _Worker(conn, served.batcher).serve()


class _Worker:
    """The worker's side: its main thread reads the pipe and queues each item straight into the model's
    batcher; the model thread settles a whole batch's answers and sends them in one message.

    Why no event loop here: any other thread doing Python work in this process takes the GIL from the
    model thread ("One process, one GIL", docs/performance.md). An asyncio loop made a task, a future
    and a loop wake-up per item (0.17-0.19 ms of CPU per call, all of it holding the GIL beside the
    model); reading a message and queueing it is a fraction of that, and the answers need no hop back
    to a loop before they are sent.

    To the batcher this object is every answer's loop (`call_soon_threadsafe`), and `_Answer` each
    item's future.
    """

    def __init__(self, conn, batcher) -> None:
        self.conn = conn
        self.batcher = batcher
        # The model thread (answers, relayed callbacks) and this one (answers cancelled at close) send.
        self.lock = threading.Lock()
        self.answers: list = []
        self.observations: list = []
        self.calls: dict[int, calls.Call] = {}
        for metric in REPLAYED:
            setattr(metrics, metric, _Recorder(metric, self.observations))

    def serve(self) -> None:
        """Read until the service says stop or goes away, then let the current batch finish."""
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                break
            if message is None:
                break
            kind = message[0]
            if kind == ITEM:
                self._item(*message[1:])
            elif kind == CANCEL:
                call = self.calls.get(message[1])
                if call is not None:
                    call.finished = True  # the batcher drops it unless its batch already runs
            else:
                key, items = message[1:]
                self.batcher.put_direct(items, _Answer(self, key, None, None, len(items)), self)
        self.batcher.close_now()

    def _item(self, key: int, item, names: list[str], deadline, request_id: str, method: str) -> None:
        call = calls.Call(request_id, method, deadline=deadline)
        self.calls[key] = call
        for name in names:
            setattr(item, name, _Relay(self, key, name))
        self.batcher.put(item, _Answer(self, key, item, call, 0), self, call)

    def call_soon_threadsafe(self, settle: Callable, outcomes: list) -> None:
        """The batcher hands over a batch's outcomes: settled here and now, sent in one message."""
        settle(outcomes)
        self._flush()

    def send(self, message) -> None:
        with self.lock, contextlib.suppress(OSError, ValueError):  # the service is gone: nobody to tell
            self.conn.send(message)

    def _flush(self) -> None:
        with self.lock:
            answers, self.answers = self.answers, []
            observations = list(self.observations)
            self.observations.clear()
            if not answers and not observations:
                return
            try:
                message = pickle.dumps((DONE, answers, observations))
            except Exception:  # noqa: BLE001 - a result or an exception that does not pickle: fail it alone
                message = pickle.dumps((DONE, [_portable_answer(a) for a in answers], observations))
            with contextlib.suppress(OSError, ValueError):
                self.conn.send_bytes(message)


class _Answer:
    """Stands in for a queued item's future in the worker: settling it queues the service's answer
    (the result or the error, the item's SET_IN_BATCH fields and the batch size)."""

    __slots__ = ("worker", "key", "item", "call", "size", "settled")

    def __init__(self, worker: _Worker, key: int, item, call: calls.Call | None, size: int) -> None:
        self.worker, self.key, self.item, self.call, self.size = worker, key, item, call, size
        self.settled = False

    def done(self) -> bool:
        return self.settled

    def cancel(self) -> None:
        self._settle(True, asyncio.CancelledError())

    def set_exception(self, exc: BaseException) -> None:
        self._settle(True, exc)

    def set_result(self, value) -> None:
        self._settle(False, value)

    def _settle(self, failed: bool, value) -> None:
        self.settled = True
        worker = self.worker
        worker.calls.pop(self.key, None)
        if self.item is None:  # a run_now batch
            answer = (self.key, failed, value if failed else list(value), {}, self.size)
        else:
            answer = (self.key, failed, value, {name: getattr(self.item, name) for name in _set_in_batch(self.item)},
                      self.call.batch_size)
        with worker.lock:
            worker.answers.append(answer)


def _portable_answer(answer):
    try:
        pickle.dumps(answer)
        return answer
    except Exception as exc:  # noqa: BLE001 - replaced by a plain error naming what it was
        key, failed, value, _, batch_size = answer
        what = f"{type(value).__name__}: {value}" if failed else f"a result that cannot leave the worker ({exc})"
        return key, True, RuntimeError(what), {}, batch_size


class _Relay:
    """Stands in for an item's callback in the worker: each call goes back to the service."""

    def __init__(self, worker: _Worker, key: int, name: str) -> None:
        self.worker, self.key, self.name = worker, key, name

    def __call__(self, *args) -> None:
        self.worker.send((CALL, self.key, self.name, args))
