"""SYN_CAPTIONING_*: the captioning service's own settings, typed and checked once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.runtime import read_settings


@dataclass(frozen=True)
class CaptioningSettings:
    # Model-repository entries served (comma-separated); unset = every captioning entry (docs/models.md).
    models: tuple[str, ...] = ()
    # Shorthand for one Hugging Face captioner directory served beside them, and its model name.
    hf_dir: str = ""
    hf_name: str = ""
    # Beam search length penalty (GNMT-style alpha); 0 = none.
    length_penalty: float = field(default=1.0, metadata={"min": 0.0})
    # The judge checkpoint behind ExplainJudge/VisualizeJudge; empty = not loaded.
    judge: str = "judge"

    @classmethod
    def from_env(cls) -> "CaptioningSettings":
        return read_settings(cls, "SYN_CAPTIONING_")
