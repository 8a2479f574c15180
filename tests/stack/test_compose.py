"""compose.yaml and the Dockerfile are right by construction: validated, and cross-checked with `make up`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts.stack import local_services

ROOT = Path(__file__).resolve().parents[2]
MODEL_SERVICES = ("captioning", "generation", "audio", "embedding")


class _ComposeLoader(yaml.SafeLoader):
    """Reads Compose's `!reset` tag (used by the CPU override) as a marker."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: {"!reset": loader.construct_sequence(node)})


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def _docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing on CI (scripts/bootstrap.sh installs it)")
        pytest.skip("docker-compose (Debian package) not installed")
    return binary


def test_docker_compose_accepts_the_file():
    result = subprocess.run([_docker_compose(), "-f", "compose.yaml", "config", "--quiet"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_docker_compose_resolves_replicas_gpus_and_health(tmp_path):
    result = subprocess.run([_docker_compose(), "-f", "compose.yaml", "config"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    resolved = yaml.safe_load(result.stdout)
    for name in MODEL_SERVICES:
        devices = resolved["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
    assert resolved["services"]["captioning"]["deploy"]["replicas"] >= 2
    assert resolved["services"]["embedding"]["deploy"]["replicas"] == 1
    assert "embedding-index" in resolved["volumes"]


def test_every_service_has_a_grpc_health_check_on_its_own_port(compose):
    for name, spec in compose["services"].items():
        port = spec["command"][spec["command"].index("--port") + 1]
        assert spec["healthcheck"]["test"] == [
            "CMD", "python", "-m", "services.runtime.healthcheck", f"127.0.0.1:{port}"], name
        assert (ROOT / "services" / name / "__main__.py").exists() or name == "gateway", name


def test_gateway_waits_for_healthy_upstreams_and_targets_them_round_robin(compose):
    gateway = compose["services"]["gateway"]
    assert {n: d["condition"] for n, d in gateway["depends_on"].items()} == {
        n: "service_healthy" for n in MODEL_SERVICES}
    for name in MODEL_SERVICES:
        port = compose["services"][name]["command"][-1]
        assert gateway["environment"][f"SYN_{name.upper()}_TARGET"] == f"dns:///{name}:{port}"


def test_make_up_runs_the_same_commands_ports_and_settings(compose):
    local = {s.name: s for s in local_services(run_dir=Path("/tmp/run"))}
    assert set(local) == set(compose["services"])
    for name, spec in compose["services"].items():
        service = local[name]
        assert service.argv[1:] == [str(a) for a in spec["command"][1:]]
        assert service.argv[service.argv.index("--port") + 1] == str(spec["command"][-1])
        for key, value in spec["environment"].items():
            value = str(value)
            translated = service.env[key]
            if key == "SYN_HOST":
                assert translated == "127.0.0.1"
            elif re.search(r"\b(" + "|".join(compose["services"]) + r"):\d+", value):
                assert translated == re.sub(r"\b[a-z]+:(\d+)", r"127.0.0.1:\1", value)
            elif value.startswith("/data/"):
                assert translated.startswith("/tmp/run/volumes/")
            else:
                assert translated == value, (name, key)
    assert local["gateway"] == list(local.values())[-1]  # dependencies start first


def test_port_offset_moves_every_port_consistently():
    local = {s.name: s for s in local_services(port_offset=1000, run_dir=Path("/tmp/run"))}
    assert local["captioning"].port == 51051
    assert local["gateway"].env["SYN_CAPTIONING_TARGET"] == "dns:///127.0.0.1:51051"
    assert local["gateway"].env["SYN_METRICS_PORT"] == "10100"
    assert local["gateway"].env["SYN_HTTP_PORT"] == "51080"


def test_cpu_override_drops_every_gpu_reservation(compose):
    override = yaml.load((ROOT / "compose.cpu.yaml").read_text(), Loader=_ComposeLoader)
    for name in MODEL_SERVICES:
        assert override["services"][name]["deploy"]["resources"]["reservations"]["devices"] == {"!reset": []}
        assert override["services"][name]["environment"]["SYN_DEVICE"] == "cpu"
    assert set(override["services"]) == set(compose["services"])


def test_dockerfile_copies_what_exists_and_installs_with_uv():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:\S+runtime", dockerfile, re.M)
    assert "uv pip install" in dockerfile
    for source in re.findall(r"^COPY (\S+) ", dockerfile, re.M):
        assert (ROOT / source).exists(), source
