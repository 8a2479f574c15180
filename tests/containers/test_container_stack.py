"""The image built and the compose stack run for real, used through the published gateway only.

Builds the Dockerfile (only BASE_IMAGE differs from a user's build), starts
compose.yaml + compose.cpu.yaml with a generated override that puts every
container on the host's network on free loopback ports of this test (no bridge
network, no traffic beyond loopback), waits for the compose health checks,
drives Describe, Imagine, Listen, Translate, RunPipeline and the `syn` CLI
through the gateway's port alone, restarts embedding and checks the collection
survived, then removes the containers, volume and image it made.

Required in `make test` (CI runs as root and installs what is missing); on a
machine where it cannot run (not root, no apt) it skips, unless CI is set, and
says what is missing. Timings go to stdout with `-s` and to the log file whose
path every failure names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from synesthesia.client import Client
from synesthesia.services import GATEWAY, SERVICES, UPSTREAMS
from synesthesia.tensors import from_tensor
from synesthesia.v1 import embedding_pb2, gateway_pb2
from tests.inputs import write_inputs
from tests.containers import engine as machine
from tests.servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.containers, pytest.mark.timeout(1800)]
ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "container-gallery"


def override(image: str, ports: dict[str, int]) -> dict:
    """compose.yaml's services on the host network, on this test's loopback ports, one replica each."""
    services = {}
    for name, service in SERVICES.items():
        port = ports[name]
        spec = {
            "image": image,
            "pull_policy": "never",
            "network_mode": "host",
            "command": ["python", "-m", service.module, "--port", str(port)],
            "environment": {"SYN_HOST": "127.0.0.1", "SYN_METRICS_PORT": "0", "SYN_TORCH_THREADS": "1"},
            "expose": [],  # reset below
            "healthcheck": {"test": ["CMD", "python", "-m", "synesthesia.healthcheck", f"127.0.0.1:{port}"],
                            "interval": "5s", "start_period": "900s"},
            "deploy": {"replicas": 1},  # replicas would share one host port
        }
        if name == GATEWAY.name:
            spec["environment"] |= {s.target_variable: f"127.0.0.1:{ports[s.name]}" for s in UPSTREAMS}
            spec["environment"]["SYN_HTTP_PORT"] = str(ports["http"])
            # The nginx front, run by the image's non-root user from the image's nginx-light.
            spec["environment"]["SYN_GATEWAY_FRONT_PORT"] = str(ports["front"])
            spec["environment"]["SYN_GATEWAY_HEALTH_INTERVAL_S"] = "1"
        services[name] = spec
    return {"services": services}


def write_override(path: Path, image: str, ports: dict[str, int]) -> None:
    # `!reset` drops compose.yaml's published ports and exposed ports, which host networking cannot have.
    text = yaml.safe_dump(override(image, ports), sort_keys=False)
    text = text.replace("expose: []", "expose: !reset []")
    text = text.replace("    pull_policy: never\n", "    pull_policy: never\n    ports: !reset []\n")
    path.write_text(text)


class Stack:
    def __init__(self, engine: machine.Engine, project: str, files: list[Path]) -> None:
        self.engine, self.project, self.files = engine, project, files

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        flags = [a for f in self.files for a in ("-f", str(f))]
        return machine.run([machine.COMPOSE, "--project-name", self.project, "--project-directory", str(ROOT),
                            *flags, *args], timeout=timeout, log=self.engine.log, check=check,
                           env={"DOCKER_HOST": "unix:///var/run/docker.sock"})

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "40", check=False).stdout[-8000:]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    log = tmp_path_factory.mktemp("containers") / "container-test.log"
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        engine = machine.ensure_engine(log)
    except machine.Unavailable as why:
        if os.environ.get("CI"):
            pytest.fail(f"container test cannot run on CI: {why}")
        pytest.skip(str(why))
    project = f"syntest{os.getpid()}"
    image = f"synesthesia-test:{project}"
    ports = {name: free_port() for name in [*SERVICES, "http", "front"]}
    files = [ROOT / "compose.yaml", ROOT / "compose.cpu.yaml", log.parent / "compose.test.yaml"]
    write_override(files[-1], image, ports)
    stack = Stack(engine, project, files)
    networks_before = set(engine.docker("network", "ls", "--quiet").stdout.split())
    try:
        machine.ensure_base_image(engine)
        timings["engine_and_base_s"] = time.monotonic() - started
        timings["build_s"] = machine.build_image(engine, image)
        timings["image_bytes"] = int(engine.docker("image", "inspect", "--format", "{{.Size}}", image).stdout)
        timings["engine_disk_bytes_at_build"] = machine.disk_bytes(engine)
        up = time.monotonic()
        result = stack.compose("up", "--detach", "--no-build", "--wait", "--wait-timeout", "900", timeout=960,
                               check=False)
        if result.returncode != 0:
            pytest.fail(f"compose up did not get healthy:\n{result.stderr[-3000:]}\n{stack.logs()}\n(log: {log})")
        timings["up_healthy_s"] = time.monotonic() - up
        # Host networking only: compose made no network of its own.
        assert set(engine.docker("network", "ls", "--quiet").stdout.split()) == networks_before
        stack.target = f"127.0.0.1:{ports[GATEWAY.name]}"
        stack.http = f"http://127.0.0.1:{ports['http']}"
        stack.front = f"127.0.0.1:{ports['front']}"
        stack.timings = timings
        yield stack
    finally:
        try:
            stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=300, check=False)
            engine.docker("image", "rm", "--force", image, check=False)
            machine.prune_build_cache(engine)
            timings["engine_disk_bytes_after"] = machine.disk_bytes(engine)
            left = engine.docker("ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={project}",
                                 check=False).stdout.split()
            volumes = engine.docker("volume", "ls", "--quiet", "--filter",
                                    f"label=com.docker.compose.project={project}", check=False).stdout.split()
            timings["total_s"] = time.monotonic() - started
            print(f"\ncontainer test timings: {json.dumps(timings)} (log: {log})")
            with log.open("a") as out:
                out.write(f"timings: {json.dumps(timings)}\n")
        finally:
            engine.stop()
        assert not left and not volumes, f"left behind: containers {left}, volumes {volumes}"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return write_inputs(tmp_path_factory.mktemp("container-inputs"), 11, 500)


def syn(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, pointed at the published gateway and nothing else."""
    env = {k: v for k, v in os.environ.items() if not (k.startswith("SYN_") and k.endswith("_TARGET"))}
    return subprocess.run([sys.executable, "-m", "synesthesia.cli", "--target", stack.target, "--json", *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_cli_health_index_search_features_through_the_gateway(stack, inputs):
    folder, _ = inputs
    health = syn(stack, "health")
    assert health.returncode == 0, health.stderr + stack.logs()
    status = json.loads(health.stdout)
    assert {status[s.name]["status"] for s in SERVICES.values()} == {"SERVING"}, status
    indexed = syn(stack, "index", str(folder / "gallery"), "--collection", COLLECTION)
    assert indexed.returncode == 0, indexed.stderr
    assert json.loads(indexed.stdout)["collection_size"] == 6
    found = syn(stack, "search", "--image", str(folder / "gallery" / "g3.png"), "--collection", COLLECTION, "-k", "2")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["hits"][0]["id"] == "g3.png"
    features = syn(stack, "features", str(folder / "sound.wav"), "--kind", "power", "--n-fft", "256")
    assert features.returncode == 0, features.stderr
    assert json.loads(features.stdout)["shape"][0] == 129


def test_gateway_rpcs_answer(stack, inputs):
    folder, scene = inputs
    with Client(stack.target, timeout_s=180) as client:
        described = client.describe(folder / "gallery" / "g1.png", collection=COLLECTION, top_k=3)
        assert described.caption.caption and described.neighbours[0].id == "g1.png"
        imagined = client.imagine("a large red circle", n=2, seed=3)
        assert len(imagined.images) == 2 and all(i.image.data.startswith(b"\x89PNG") for i in imagined.images)
        heard = client.listen(folder / "scene.png", folder / "sound.wav")
        truth = scene.objects[scene.sounding_index]
        assert truth.colour in heard.summary and truth.shape in heard.summary, heard.summary
        assert from_tensor(heard.heatmap.values).shape == scene.image.shape[:2]
        translated = client.translate(folder / "scene.png", "day2night")
        assert translated.image.data.startswith(b"\x89PNG") and translated.caption
        spec = (ROOT / "docs" / "examples" / "pipeline.yaml").read_text()
        events = list(client.run(spec, {"scene": (folder / "scene.png").read_bytes()}))
    states = {e.step: e.state for e in events if e.state != gateway_pb2.STEP_STATE_STARTED}
    assert states and set(states.values()) == {gateway_pb2.STEP_STATE_FINISHED}, events


def test_http_json_and_the_playground_are_served_from_the_image(stack):
    with urllib.request.urlopen(f"{stack.http}/openapi.json", timeout=30) as reply:
        paths = json.load(reply)["paths"]
    assert any(path.startswith("/synesthesia.v1.Embedding/") for path in paths)
    with urllib.request.urlopen(f"{stack.http}/", timeout=30) as reply:
        assert reply.status == 200 and b"<html" in reply.read().lower()


def test_the_gateways_nginx_front_runs_in_the_image(stack):
    """SYN_GATEWAY_FRONT_PORT in the container: forwarded calls straight upstream, the rest to the gateway."""
    with Client(stack.front, timeout_s=60) as client:
        assert client.health()["embedding"]["status"] == "SERVING"
        hits = client.search("a red circle", collection=COLLECTION, top_k=2)
    assert len(hits.hits) == 2


def test_collection_survives_restarting_embedding(stack, inputs):
    folder, _ = inputs
    with Client(stack.target, timeout_s=60) as client:
        before = client.collection(COLLECTION)
        assert before.size == 6
        restarted = stack.compose("restart", "embedding", timeout=300, check=False)
        assert restarted.returncode == 0, restarted.stderr
        deadline = time.monotonic() + 600
        while client.health()["embedding"]["status"] != "SERVING":
            assert time.monotonic() < deadline, f"embedding not back after restart:\n{stack.logs()}"
            time.sleep(2)
        after = client.collection(COLLECTION)
        hits = client.search(image=folder / "gallery" / "g4.png", collection=COLLECTION, top_k=1).hits
    assert (after.size, after.dimension) == (before.size, before.dimension)
    assert hits[0].id == "g4.png"
    assert isinstance(after, embedding_pb2.GetCollectionResponse)
