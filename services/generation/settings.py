"""SYN_GENERATION_*: the generation service's own settings, typed and checked once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.runtime import read_settings

DEFAULT_CHUNK = 8


@dataclass(frozen=True)
class GenerationSettings:
    # Images generated per forward pass: a fixed chunk keeps results independent of batch make-up.
    chunk: int = field(default=DEFAULT_CHUNK, metadata={"min": 1})

    @classmethod
    def from_env(cls) -> "GenerationSettings":
        return read_settings(cls, "SYN_GENERATION_")
