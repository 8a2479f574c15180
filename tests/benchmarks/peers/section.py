"""Where the peer comparison lives in BENCHMARKS.md: between two markers, so `make bench` (the
service benchmarks) and `make bench-peers` can each regenerate their part without the other's. The
shared-cores run and the split-cores run (`--split`) each have markers of their own."""

from __future__ import annotations

from pathlib import Path

SHARED = "bench-peers"
SPLIT = "bench-peers-split"


def markers(name: str = SHARED) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def current(text: str, name: str = SHARED) -> str:
    """The section `name` of `text`, markers included, or ""."""
    start, end = markers(name)
    if start not in text or end not in text:
        return ""
    return text[text.index(start):text.index(end) + len(end)]


def write(out: Path, section: str, name: str = SHARED) -> None:
    """Replace the section `name` of `out` with `section` (appended when absent)."""
    text = out.read_text() if out.exists() else "# Benchmarks\n"
    old = current(text, name)
    text = text.replace(old, section) if old else text.rstrip("\n") + "\n\n" + section + "\n"
    out.write_text(text)


def kept(text: str) -> list[str]:
    """The peer sections of `text` (shared, then split), for `make bench` to write back after its own."""
    return [found for found in (current(text, name) for name in (SHARED, SPLIT)) if found]
