"""The client distribution installs on its own, without torch, and its CLI runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_clients_install_into_a_fresh_venv_without_torch(tmp_path):
    # bootstrap.sh may have installed uv with `pip install --user`, off a bare PATH.
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path.home() / ".local" / "bin"))
    if uv is None:
        pytest.fail("uv is missing (scripts/bootstrap.sh installs it)")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", "3.11", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), str(ROOT / "clients")], check=True,
                   cwd=tmp_path)
    probe = subprocess.run([str(python), "-c", (
        "import importlib.util, synesthesia.v1.gateway_pb2_grpc, synesthesia.client, synesthesia.cli;"
        "print(importlib.util.find_spec('torch') is None)")], capture_output=True, text=True, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "True"
    helped = subprocess.run([str(venv / "bin" / "syn"), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert helped.returncode == 0 and "imagine" in helped.stdout
