"""Every shell example in README.md and docs/*.md, run as written against a running stack.

The ```bash blocks of each page run in order, each as one bash script with
`set -euo pipefail`, from the repository root, so a command that fails, or a file
a page names that no longer exists, fails this test. Two things differ from a
reader's shell, both on purpose: the stack runs on shifted ports (SYN_PORT_OFFSET,
so a stack someone has up is left alone), and loopback addresses of the default
ports in the commands (127.0.0.1:50050 ... :50080) are shifted to match. The sample
inputs the examples use are the ones `make demo` leaves in out/demo/inputs/.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from scripts.demo import write_inputs
from tests.servers import free_port_offset

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# README.md last: its example ends with `make down`, and the pages before it reuse the running stack.
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
DEFAULT_PORTS = (50050, 50051, 50052, 50053, 50054, 50080)
# Commands a test does not run, by prefix, and why.
NOT_RUN = {
    "make test": "the test suite itself",
    "docker ": "needs a Docker engine; compose.yaml and the Dockerfile are checked by tests/stack",
}
# Third-party tools the examples show: run when installed, else left out.
OPTIONAL_TOOLS = ("grpcurl",)
FENCE = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def commands(block: str) -> list[str]:
    """The block's commands: backslash continuations joined, blank and comment-only lines dropped."""
    out, pending = [], ""
    for line in block.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command = (pending + line).strip()
        pending = ""
        if command and not command.startswith("#"):
            out.append(command)
    return out


def runnable(command: str) -> bool:
    if any(command.startswith(prefix) for prefix in NOT_RUN):
        return False
    tool = command.split()[0]
    return tool not in OPTIONAL_TOOLS or subprocess.run(["which", tool], capture_output=True).returncode == 0


def shift_ports(command: str, offset: int) -> str:
    return re.sub(r"\b(127\.0\.0\.1|localhost):(\d{5})\b",
                  lambda m: f"{m.group(1)}:{int(m.group(2)) + offset}" if int(m.group(2)) in DEFAULT_PORTS
                  else m.group(0), command)


def pages_with_examples() -> list[Path]:
    return [page for page in PAGES if FENCE.search(page.read_text())]


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory):
    offset = free_port_offset()  # clear of a running `make up`, and of the ephemeral range
    env = {**os.environ, "SYN_PORT_OFFSET": str(offset), "SYN_RUN_DIR": str(tmp_path_factory.mktemp("docs-run")),
           "SYN_TARGET": f"127.0.0.1:{50050 + offset}"}
    write_inputs(ROOT / "out" / "demo" / "inputs")  # what `make demo` leaves, for a page run on its own
    env["_OFFSET"] = str(offset)
    yield env
    subprocess.run(["make", "down"], cwd=ROOT, env=env, capture_output=True, timeout=120)


def test_the_pages_have_examples():
    assert ROOT / "README.md" in pages_with_examples()
    assert {"cli.md", "gateway.md"} <= {p.name for p in pages_with_examples()}


@pytest.mark.parametrize("page", pages_with_examples(), ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run_as_written(page, stack_env):
    up = subprocess.run(["make", "up"], cwd=ROOT, env=stack_env, capture_output=True, text=True, timeout=900)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    offset = int(stack_env["_OFFSET"])
    for number, match in enumerate(FENCE.finditer(page.read_text()), 1):
        lines = [shift_ports(c, offset) for c in commands(match.group(1)) if runnable(c)]
        if not lines:
            continue
        script = "set -euo pipefail -x\n" + "\n".join(lines) + "\n"
        result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=stack_env, capture_output=True, text=True,
                                timeout=1200, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, (
            f"{page.relative_to(ROOT)} bash block {number} failed (exit {result.returncode}); the trace ends:\n"
            + result.stderr[-4000:] + "\nstdout:\n" + result.stdout[-2000:])
