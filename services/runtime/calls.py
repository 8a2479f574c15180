"""What the runtime knows about the call being served: for its log line, metrics and upstream calls,
and for work that should not start (or go on) once nobody waits for it.

The interceptor opens a `Call` per RPC in a context variable; the batcher notes
the model and batch size that served it, a servicer may name its model with
`note_model`, and the gateway reads the request id to forward it upstream.
Context variables follow asyncio tasks and `asyncio.to_thread` workers, so
`asyncio.gather` inside a handler, a decoding thread and DynamicBatcher.submit
all see the same call without any servicer passing it around.

Deadlines and cancellation: expensive stages ask `check_call(stage)` first (or
run through `in_thread(stage, fn, ...)`); a call whose deadline has passed or
which the client cancelled gets DEADLINE_EXCEEDED / CANCELLED instead of decode
or model work. The check is thread-safe (an absolute monotonic deadline and
a flag set when the call ends), so long decoders can also poll it between blocks.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import ServiceError, cancelled, deadline_exceeded

T = TypeVar("T")
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


@dataclass
class Call:
    request_id: str
    method: str
    peer: str = ""
    model: str = ""
    # The largest batch any of this call's items rode in (0: no batcher involved).
    batch_size: int = 0
    # time.monotonic() when the caller's deadline passes (None: no deadline).
    deadline: float | None = None
    # True once the RPC has ended, however it ended (the gRPC context's done callback). A plain flag
    # rather than a threading.Event (a Condition and a lock per call): it is only ever set on the event
    # loop and read, never waited on, by other threads; an attribute store is atomic in CPython.
    finished: bool = field(default=False, repr=False)
    # Counted against SYN_MAX_CONCURRENT_RPCS.
    admitted: bool = False

    def watch(self, context) -> "Call":
        """Take the deadline and end-of-call signal from a grpc.aio servicer context."""
        left = context.time_remaining()
        self.deadline = None if left is None else time.monotonic() + left
        try:
            context.add_done_callback(self._end)
        except (AttributeError, NotImplementedError):  # a context without callbacks: the deadline still holds
            pass
        return self

    def _end(self, _context) -> None:
        self.finished = True

    def expired(self, slack_s: float = 0.0) -> bool:
        """Past the deadline; with `slack_s`, also within that much of it."""
        return self.deadline is not None and time.monotonic() >= self.deadline - slack_s

    def problem(self, stage: str) -> ServiceError | None:
        """Why work for `stage` should not run for this call, or None."""
        if self.expired():
            return deadline_exceeded(f"the deadline passed before {stage}")
        if self.finished:
            return cancelled(f"the call was cancelled before {stage}")
        return None


CURRENT: contextvars.ContextVar[Call | None] = contextvars.ContextVar("call", default=None)


def current() -> Call | None:
    return CURRENT.get()


def note_model(name: str) -> None:
    """Name the model serving the current call (labels its metrics and log line)."""
    call = CURRENT.get()
    if call is not None and name:
        call.model = name if not call.model or call.model == name else f"{call.model},{name}"


def check_call(stage: str) -> None:
    """Raise DEADLINE_EXCEEDED or CANCELLED when the current call is over (no-op outside a call)."""
    call = CURRENT.get()
    problem = call.problem(stage) if call is not None else None
    if problem is not None:
        raise problem


async def in_thread(stage: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """`asyncio.to_thread(fn, ...)`, checked before queueing and again when a worker picks it up."""
    check_call(stage)

    def checked() -> T:
        check_call(stage)
        return fn(*args, **kwargs)

    return await asyncio.to_thread(checked)
