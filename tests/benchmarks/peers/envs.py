"""One virtual environment per peer, built with uv from the exact pins next to this file.

The peers never touch the project's own `.venv` or its runtime dependencies: each lives in
`$SYN_PEERS_DIR/<peer>` (default `~/.cache/synesthesia/peers`), is rebuilt when its pins
change (a stamp holds the pin file's hash), and runs the project's model code from the
repository (`PYTHONPATH`), so every system computes with the same modules and weights.

`requirements-<peer>.txt` is `uv pip compile requirements-<peer>.in` (no index URLs); refresh
it with `python -m tests.benchmarks.peers.envs --compile`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = ("triton", "torchserve", "ray")
# Bench-only tools with their own environment (the sampling profiler).
TOOLS = ("profile",)
PYTHON = "3.11"


def peers_dir() -> Path:
    return Path(os.environ.get("SYN_PEERS_DIR", Path.home() / ".cache" / "synesthesia" / "peers"))


def uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(found).exists():
        raise SystemExit("uv not found: run `make install` first (bootstrap installs it)")
    return found


def python_of(peer: str) -> Path:
    return peers_dir() / peer / "bin" / "python"


def ensure(peer: str, log=print) -> Path:
    """The peer's interpreter, building or refreshing its environment when the pins changed."""
    pins = HERE / f"requirements-{peer}.txt"
    digest = hashlib.sha256(pins.read_bytes()).hexdigest()
    root = peers_dir() / peer
    stamp = root / ".pins-sha256"
    if stamp.exists() and stamp.read_text().strip() == digest and python_of(peer).exists():
        return python_of(peer)
    log(f"[peers] building the {peer} environment in {root} (uv, exact pins from {pins.name})")
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([uv(), "venv", "-q", "--python", PYTHON, str(root)], check=True)
    subprocess.run([uv(), "pip", "sync", "-q", "--python", str(python_of(peer)), str(pins)], check=True)
    stamp.write_text(digest + "\n")
    return python_of(peer)


def compile_pins() -> None:
    for peer in PEERS + TOOLS:
        subprocess.run([uv(), "pip", "compile", "-q", "--python-version", PYTHON, "--no-header",
                        str(HERE / f"requirements-{peer}.in"), "-o", str(HERE / f"requirements-{peer}.txt")],
                       check=True, cwd=HERE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("peers", nargs="*", default=list(PEERS))
    parser.add_argument("--compile", action="store_true", help="re-resolve the pins from the .in files")
    args = parser.parse_args()
    if args.compile:
        compile_pins()
    for peer in args.peers:
        print(peer, ensure(peer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
