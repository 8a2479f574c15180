"""What the runtime knows about the call being served, for its log line, metrics and upstream calls.

The interceptor opens a `Call` per RPC in a context variable; the batcher notes
the model and batch size that served it, a servicer may name its model with
`note_model`, and the gateway reads the request id to forward it upstream.
Context variables follow asyncio tasks, so `asyncio.gather` inside a handler
sees the same call.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


@dataclass
class Call:
    request_id: str
    method: str
    peer: str = ""
    model: str = ""
    # The largest batch any of this call's items rode in (0: no batcher involved).
    batch_size: int = 0


CURRENT: contextvars.ContextVar[Call | None] = contextvars.ContextVar("call", default=None)


def current() -> Call | None:
    return CURRENT.get()


def note_model(name: str) -> None:
    """Name the model serving the current call (labels its metrics and log line)."""
    call = CURRENT.get()
    if call is not None and name:
        call.model = name if not call.model or call.model == name else f"{call.model},{name}"
