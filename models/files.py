"""Crash-safe file writes, shared by the checkpoint manifest and the embedding index (no torch here)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside `path` durable, not only the file's bytes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old file or the new one, never a mix."""
    atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_with(path: Path, write: Callable[[str], object]) -> None:
    """`atomic_write` for a writer that wants a file name (faiss.write_index): `write(tmp)` fills a
    temporary file beside `path`, which is made durable and then renamed over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
