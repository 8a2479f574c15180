"""`make up`, the demo and `make down` end to end, as local processes on shifted ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from synesthesia.services import UPSTREAM_NAMES
from tests.servers import free_port_offset

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def stack(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.stack", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def shipped(checkpoint: str) -> bool:
    directory = Path(os.environ.get("SYN_CHECKPOINT_DIR", ROOT / "models" / "checkpoints"))
    return (directory / f"{checkpoint}.safetensors").exists()


def test_up_demo_down(tmp_path):
    missing = [n for n in UPSTREAM_NAMES
               if not (ROOT / "services" / n / "servicer.py").exists()]
    if missing:
        pytest.skip(f"services not in this checkout yet: {missing}")
    offset = free_port_offset()  # clear of a running `make up`, and of the ephemeral range
    common = ["--run-dir", str(tmp_path / "run"), "--port-offset", str(offset)]
    try:
        up = stack("up", *common)
        assert up.returncode == 0, up.stdout + up.stderr
        # compose.yaml's order: the gateway starts once every upstream serves.
        lines = up.stdout.splitlines()
        started = next(i for i, line in enumerate(lines) if line.startswith("gateway: started"))
        assert all(any(line == f"{name}: SERVING" or line.startswith(f"{name}: SERVING ") for line in lines[:started])
                   for name in UPSTREAM_NAMES), up.stdout
        status = json.loads(stack("status", *common).stdout)
        assert set(status.values()) == {"SERVING"}, status
        demo = stack("demo", *common, "--out", str(tmp_path / "demo"))
        assert demo.returncode == 0, demo.stdout + demo.stderr
        summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
        pictures = ["describe_attention.png", "listen.png"]
        if shipped("text2image"):
            pictures.append("imagine.png")
            assert len(summary["imagine"]) == 4, summary["imagine"]
        else:
            assert summary["imagine"].startswith("NOT_FOUND"), summary["imagine"]
        for picture in pictures:
            assert (tmp_path / "demo" / picture).read_bytes().startswith(b"\x89PNG"), picture
        assert summary["listen"].startswith("the sound comes from")
        if shipped("day2night") and shipped("text2image"):
            assert summary["pipeline"] == "finished"
        else:  # the example pipeline needs both models: the failure names the step and the status
            assert summary["pipeline"].startswith("NOT_FOUND: pipeline failed at step '"), summary["pipeline"]
        assert json.loads(stack("status", *common).stdout) == status  # demo leaves a running stack running
    finally:
        down = stack("down", *common)
    assert down.returncode == 0, down.stderr
    assert set(json.loads(stack("status", *common).stdout).values()) == {"stopped"}
