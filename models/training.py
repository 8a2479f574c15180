"""The training harness every built-in model uses: seeding, a resumable loop, checkpoints.

Read top to bottom:

* `seed_everything(seed)`: python, numpy and torch (CPU and CUDA) random state.
* `train_loop(...)`: the loop. It owns the step counter, the progress bar, periodic
  evaluation and the resume state; the caller owns the model, the optimiser, the data
  and what one step does. Resume state lives in ``run/<name>/state.pt`` (``run/`` is
  gitignored; pass `run_dir` to put it elsewhere, e.g. a temp dir in tests). Re-running
  the same command after an interruption continues from the last saved step with the
  same weights, optimiser, scheduler, random state and history.
* `save_checkpoint(name, model, ...)`: writes ``models/checkpoints/<name>.safetensors``
  and its entry in ``models/checkpoints/manifest.json``.
* `load_checkpoint(name, expected_config=...)`: the state dict and the manifest entry,
  after checking the file's sha256 and the config; `CheckpointError` otherwise.
* `load_model(name, build)`: the network `build(config)` makes, with those weights, in eval
  mode; `load_shipped` adds the sha256 and metrics a service reports (`LoadedModel`).

Checkpoint format: a safetensors file (no pickle) holding the model's ``state_dict`` as
contiguous CPU tensors. Tied weights (several names for one tensor) are stored once;
the aliases are listed in the file's metadata (``tied``: alias -> stored name) and in
the manifest, and `load_checkpoint` restores every name. Extra tensors (e.g. a
vocabulary table) are stored under the prefix ``__extra__.`` and returned in the
entry's ``extra_tensors``, not in the state dict. The file metadata repeats the name
and config, so a file copied without its manifest still says what it is.

Manifest entry: ``{file, sha256, size_bytes, config, metrics, command, data_seeds,
parameter_count, tied, created}``. Several trainers may finish at once, so the
manifest is updated read-modify-write under an ``fcntl.flock`` on the checkpoint directory
and replaced atomically (write to a temp file, then ``os.replace``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from models.files import atomic_write

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
RUN_DIR = REPO_ROOT / "run"
MANIFEST_NAME = "manifest.json"
EXTRA_PREFIX = "__extra__."


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt (sha256), or was trained with a different config."""


# --- Seeding ------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    """Seed python's `random`, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def passive_openmp_or_reexec() -> None:
    """Make idle OpenMP threads sleep instead of spin: re-run this ``python -m`` command with
    ``OMP_WAIT_POLICY=PASSIVE`` unless it is already set. The variable must be set before torch
    loads, hence the re-exec. On a shared 2-core machine with other trainers running, spinning
    threads make 2-thread training about ten times slower than 1 thread; passive ones do not."""
    if os.environ.get("OMP_WAIT_POLICY"):
        return
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is None or not spec.name:
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]])


def command_line() -> str:
    """How this process was started, for the manifest (``python -m pkg.mod --flag ...``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    head = f"python -m {spec.name}" if spec is not None and spec.name else f"python {sys.argv[0]}"
    if head.endswith(".__main__"):
        head = head[: -len(".__main__")]
    return " ".join([head, *sys.argv[1:]])


# --- JSON helpers ---------------------------------------------------------------

def _plain(value: Any) -> Any:
    """Config and metric values as plain JSON types (tuples become lists, numpy/torch scalars numbers)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, range):
        return [value.start, value.stop]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"not JSON-serialisable for a manifest: {value!r} ({type(value).__name__})")


def _config_differences(expected: Any, actual: Any, prefix: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual)):
            where = f"{prefix}.{key}" if prefix else key
            if key not in actual:
                out.append(f"{where}: expected {expected[key]!r}, checkpoint has no such key")
            elif key not in expected:
                out.append(f"{where}: checkpoint has {actual[key]!r}, not expected")
            else:
                out.extend(_config_differences(expected[key], actual[key], where))
        return out
    return [] if expected == actual else [f"{prefix or 'config'}: expected {expected!r}, checkpoint has {actual!r}"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- Manifest -------------------------------------------------------------------

@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # The lock is held on the directory itself, so no lock file is left behind next to the checkpoints.
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_manifest(directory: Path | None = None) -> dict[str, Any]:
    """The whole manifest ({} when there is none yet)."""
    path = Path(directory or CHECKPOINT_DIR) / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc


def _update_manifest(directory: Path, name: str, entry: dict[str, Any]) -> None:
    with _locked(directory):
        manifest = read_manifest(directory)
        manifest[name] = entry
        text = json.dumps(dict(sorted(manifest.items())), indent=2, sort_keys=False) + "\n"
        atomic_write(directory / MANIFEST_NAME, text.encode("utf-8"))


# --- Saving and loading ---------------------------------------------------------------

def _dedupe_tied(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Store each tensor once: names that view the very same memory become aliases of the first name.
    Tensors that merely overlap another's memory are copied (safetensors refuses shared memory)."""
    tensors: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    storages: set[int] = set()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"state_dict entry {key!r} is not a tensor ({type(value).__name__})")
        value = value.detach()
        ident = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape),
                 tuple(value.stride()), value.dtype, value.device)
        if value.numel() and ident in seen:
            tied[key] = seen[ident]
            continue
        if value.numel():
            seen[ident] = key
        storage = value.untyped_storage().data_ptr()
        shared = value.numel() > 0 and storage in storages
        storages.add(storage)
        tensors[key] = value.to("cpu").contiguous().clone() if shared else value.to("cpu").contiguous()
    return tensors, tied


def parameter_count(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(name: str, model: torch.nn.Module, *, config: dict, metrics: dict, command: str,
                    data_seeds: dict, extra_tensors: dict[str, torch.Tensor] | None = None,
                    directory: Path | None = None) -> Path:
    """Write ``<directory>/<name>.safetensors`` (default directory: models/checkpoints) and its
    manifest entry; returns the file's path. See the module docstring for the format."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad checkpoint name {name!r}")
    directory = Path(directory or CHECKPOINT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    tensors, tied = _dedupe_tied(model.state_dict())
    for key, value in (extra_tensors or {}).items():
        tensors[EXTRA_PREFIX + key] = value.detach().to("cpu").clone().contiguous()
    config, metrics, data_seeds = _plain(config), _plain(metrics), _plain(data_seeds)
    metadata = {"name": name, "config": json.dumps(config, sort_keys=True), "tied": json.dumps(tied, sort_keys=True),
                "format": "synesthesia-checkpoint/1"}
    path = directory / f"{name}.safetensors"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)
        sha = sha256_file(Path(tmp))
        size = os.path.getsize(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    entry = {
        "file": path.name, "sha256": sha, "size_bytes": size, "config": config, "metrics": metrics,
        "command": command, "data_seeds": data_seeds, "parameter_count": parameter_count(model),
        "tied": tied, "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    _update_manifest(directory, name, entry)
    return path


def load_checkpoint(name: str, *, expected_config: dict | None = None,
                    directory: Path | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, manifest entry) of checkpoint `name`, after verifying its sha256 and, when given,
    that its config equals `expected_config`. The entry is a copy that also carries
    ``extra_tensors`` (a dict, empty when none were saved). Raises `CheckpointError`."""
    directory = Path(directory or CHECKPOINT_DIR)
    manifest = read_manifest(directory)
    if name not in manifest:
        known = ", ".join(sorted(manifest)) or "none"
        raise CheckpointError(f"no checkpoint {name!r} in {directory / MANIFEST_NAME} (known: {known}); "
                              f"train it first (see `make train`)")
    entry = json.loads(json.dumps(manifest[name]))
    path = directory / entry.get("file", f"{name}.safetensors")
    if not path.exists():
        raise CheckpointError(f"checkpoint file {path} is missing (listed in the manifest); retrain or restore it")
    actual = sha256_file(path)
    if actual != entry.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupt or was replaced: sha256 {actual} but the manifest "
                              f"records {entry.get('sha256')}; retrain it or restore the file")
    if expected_config is not None:
        differences = _config_differences(_plain(expected_config), entry.get("config"))
        if differences:
            raise CheckpointError(f"checkpoint {name!r} was trained with a different config: "
                                  + "; ".join(differences))
    try:
        tensors = load_file(path)
        from safetensors import safe_open

        with safe_open(path, framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - any decoding problem is a bad checkpoint
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if "config" in metadata and json.loads(metadata["config"]) != entry.get("config"):
        raise CheckpointError(f"{path}'s embedded config differs from its manifest entry")
    extras = {k[len(EXTRA_PREFIX):]: v for k, v in tensors.items() if k.startswith(EXTRA_PREFIX)}
    state = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)}
    for alias, source in json.loads(metadata.get("tied", "{}")).items():
        state[alias] = state[source]
    entry["extra_tensors"] = extras
    return state, entry


def load_model(name: str, build: Callable[[dict], torch.nn.Module], *, directory: Path | None = None,
               device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild checkpoint `name`'s network with `build(manifest config)`, load its verified weights,
    and return (model in eval mode on `device`, manifest entry). A config that does not describe the
    stored weights is a `CheckpointError`, like a corrupt file."""
    state, entry = load_checkpoint(name, directory=directory)
    try:
        model = build(entry["config"])
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {name!r} does not match the network its config describes: {exc}") from None
    return model.to(device).eval(), entry


@dataclass
class LoadedModel:
    """A shipped network in eval mode, with what a service reports of it (ListModels)."""

    model: torch.nn.Module
    sha256: str
    metrics: dict = field(default_factory=dict)

    @property
    def parameter_count(self) -> int:
        return parameter_count(self.model)


def load_shipped(name: str, build: Callable[[dict], torch.nn.Module], *, directory: Path | None = None,
                 device: torch.device | str = "cpu") -> LoadedModel:
    """`load_model` for a service: the network plus its manifest's sha256 and metrics."""
    model, entry = load_model(name, build, directory=directory, device=device)
    return LoadedModel(model, entry.get("sha256", ""), dict(entry.get("metrics", {})))


# --- The loop -------------------------------------------------------------------

@dataclass
class LoopResult:
    """What `train_loop` returns: the last evaluation, every evaluation, and the loop's seconds summed
    over every session of a resumed run."""

    steps: int
    seconds: float
    resumed_from: int
    last_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_rest": [int(pos), int(has_gauss), float(cached)], "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    pos, has_gauss, cached = state["numpy_rest"]
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _progress(total: int, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=interactive,
                mininterval=0.5 if interactive else 30.0, ascii=not interactive)


def train_loop(
    *,
    name: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[int], Iterable[Any]],
    step_fn: Callable[[Any, int], Mapping[str, float]],
    total_steps: int,
    scheduler: Any | None = None,
    eval_fn: Callable[[int], Mapping[str, float]] | None = None,
    eval_every: int = 0,
    save_every: int = 200,
    run_dir: Path | None = None,
    resume: bool = True,
    config: dict | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
) -> LoopResult:
    """Run steps ``start .. total_steps - 1`` where `start` is 0 or the step saved in the resume state.

    batches(start) -> an iterable of batches for steps start, start + 1, ... (make it depend only on
        the step, e.g. scene seeds derived from the step, so a resumed run sees the same data);
    step_fn(batch, step) -> scalars to show (it does forward, backward and ``optimizer.step()``;
        the loop calls ``model.train()`` before and ``scheduler.step()`` after);
    eval_fn(step) -> metrics on the held-out seeds, called with the model in eval mode under
        ``torch.no_grad()`` every `eval_every` steps and after the last step;
    resume state: ``<run_dir or run/<name>>/state.pt`` every `save_every` steps and at the end;
        ``resume=False`` starts afresh (overwriting it). A saved state whose `config` differs
        from this run's is refused (CheckpointError), so a changed command never continues a stale run.
    """
    run_dir = Path(run_dir) if run_dir is not None else RUN_DIR / name
    state_path = run_dir / "state.pt"
    start, history, earlier_seconds = 0, [], 0.0
    plain_config = json.dumps(_plain(config), sort_keys=True) if config is not None else None
    if resume and state_path.exists():
        saved = torch.load(state_path, map_location="cpu", weights_only=True)
        if plain_config is not None and saved.get("config") not in (None, plain_config):
            raise CheckpointError(f"{state_path} belongs to a run with another config; delete it or start "
                                  f"afresh (resume=False / --fresh)")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved.get("scheduler") is not None:
            scheduler.load_state_dict(saved["scheduler"])
        _set_rng_state(saved["rng"])
        start, history = int(saved["step"]), json.loads(saved["history"])
        earlier_seconds = float(saved.get("seconds", 0.0))
        log(f"[{name}] resuming from step {start} ({state_path})")

    def save_state(step: int) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": _rng_state(), "step": step, "history": json.dumps(history), "config": plain_config,
            "seconds": earlier_seconds + time.time() - started,
        }
        tmp = state_path.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, state_path)

    def evaluate(step: int) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in eval_fn(step).items()}
        history.append({"step": step, **metrics})
        log(f"[{name}] step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return metrics

    started = time.time()
    running: dict[str, float] = {}
    bar = _progress(total_steps, start, name, progress)
    try:
        iterator = iter(batches(start))
        for step in range(start, total_steps):
            model.train()
            scalars = step_fn(next(iterator), step)
            if scheduler is not None:
                scheduler.step()
            for key, value in scalars.items():  # smoothed for display
                running[key] = float(value) if key not in running else 0.95 * running[key] + 0.05 * float(value)
            bar.set_postfix({k: f"{v:.4f}" for k, v in running.items()}, refresh=False)
            bar.update(1)
            done = step + 1
            if eval_fn is not None and eval_every and done % eval_every == 0 and done != total_steps:
                evaluate(done)
            if save_every and done % save_every == 0 and done != total_steps:
                save_state(done)
    finally:
        bar.close()
    last = {}
    if eval_fn is not None and (not history or history[-1]["step"] != total_steps):
        last = evaluate(total_steps)
    elif history:
        last = {k: v for k, v in history[-1].items() if k != "step"}
    save_state(total_steps)
    return LoopResult(steps=total_steps, seconds=earlier_seconds + time.time() - started, resumed_from=start,
                      last_metrics=last, history=history)
