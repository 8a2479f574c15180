"""Per-call limits for explanations, so that a request cannot ask for unbounded work.

Occlusion costs one forward pass per window position, class visualisation one
forward and backward per step, maximally activating patches one forward per
scene. The caller (a service) sets the limits from its `SYN_EXPLAIN_*` settings;
every method checks its planned cost before it starts and the deadline between
chunks, and raises `BudgetError` naming the field and the setting.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class BudgetError(ValueError):
    """A request asked for more work than its budget allows (or ran past its time)."""

    def __init__(self, field: str, message: str, setting: str = "", timed_out: bool = False) -> None:
        super().__init__(f"{field}: {message}" + (f" (limit set by {setting})" if setting else ""))
        self.field = field
        self.setting = setting
        self.timed_out = timed_out


@dataclass
class Budget:
    # Forward passes one occlusion map may take (window positions).
    max_evaluations: int = 1024
    # Gradient-ascent steps one class visualisation may take.
    max_steps: int = 512
    # Scenes one maximally-activating-patches search may read.
    max_scenes: int = 512
    # Points one t-SNE map may hold.
    max_points: int = 2000
    # Wall-clock seconds one explanation may run; 0 = no limit.
    max_seconds: float = 0.0
    started: float = 0.0
    # Set by the caller when the request is cancelled or past its deadline: the work stops at the next chunk.
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Called between chunks (a service passes one that waits while its normal calls have work queued).
    between_chunks: Callable[[], None] | None = None

    def start(self) -> "Budget":
        self.started = time.monotonic()
        return self

    def check_time(self, field: str = "request") -> None:
        """Called between chunks of work: stops a cancelled or overlong explanation, lets normal calls go first."""
        if self.cancelled.is_set():
            raise BudgetError(field, "the request was cancelled", timed_out=True)
        if self.between_chunks is not None:
            self.between_chunks()
        if self.max_seconds and self.started and time.monotonic() - self.started > self.max_seconds:
            raise BudgetError(field, f"the explanation ran past {self.max_seconds:g} s",
                              "SYN_EXPLAIN_MAX_SECONDS", timed_out=True)

    def check_evaluations(self, count: int, field: str) -> None:
        if count > self.max_evaluations:
            raise BudgetError(field, f"needs {count} forward passes, more than {self.max_evaluations}; "
                                     "use a larger stride or window", "SYN_EXPLAIN_MAX_EVALUATIONS")

    def check_steps(self, steps: int, field: str) -> None:
        if not 1 <= steps <= self.max_steps:
            raise BudgetError(field, f"{steps} is outside 1..{self.max_steps}", "SYN_EXPLAIN_MAX_STEPS")

    def check_scenes(self, scenes: int, field: str) -> None:
        if not 1 <= scenes <= self.max_scenes:
            raise BudgetError(field, f"{scenes} is outside 1..{self.max_scenes}", "SYN_EXPLAIN_MAX_SCENES")

    def check_points(self, points: int, field: str) -> None:
        if points > self.max_points:
            raise BudgetError(field, f"{points} points, more than {self.max_points}", "SYN_EXPLAIN_MAX_POINTS")


def occlusion_positions(height: int, width: int, window: int, stride: int) -> int:
    """Window positions of an occlusion sweep (the last row and column are clamped to the edge)."""
    rows = max(1, math.ceil((height - window) / stride) + 1) if height > window else 1
    cols = max(1, math.ceil((width - window) / stride) + 1) if width > window else 1
    return rows * cols
