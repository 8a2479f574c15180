"""Where the peer comparison lives in BENCHMARKS.md: between two markers, so `make bench` (the
service benchmarks) and `make bench-peers` can each regenerate their part without the other's."""

from __future__ import annotations

from pathlib import Path

START = "<!-- bench-peers:start -->"
END = "<!-- bench-peers:end -->"


def current(text: str) -> str:
    """The marked section of `text`, markers included, or ""."""
    if START not in text or END not in text:
        return ""
    return text[text.index(START):text.index(END) + len(END)]


def write(out: Path, section: str) -> None:
    """Replace the marked section of `out` with `section` (appended when absent)."""
    text = out.read_text() if out.exists() else "# Benchmarks\n"
    old = current(text)
    text = text.replace(old, section) if old else text.rstrip("\n") + "\n\n" + section + "\n"
    out.write_text(text)
