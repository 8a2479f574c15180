"""Reading reference implementations' `.pth` files strictly, without executing pickles.

Shared by the families that load a released PyTorch checkpoint (DF-GAN, pix2pix / CycleGAN,
EZ-VSL)::

    saved = read_pth(entry.name, path)                              # torch.load(weights_only=True)
    state = state_dict_at(entry.name, path, saved, ("model", "netG"))  # tensors only, `module.` stripped
    load_exactly(entry.name, path, network, state)                  # any missing / unexpected / mis-shaped key fails

Every failure is a LoadError naming the model, the file and the first offending keys, so a
service stops at start-up instead of serving a half-random network.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from models.hf import LoadError, _shown

# DataParallel / DistributedDataParallel prefix every key with this.
PARALLEL_PREFIX = "module."


def read_pth(name: str, path: Path, allowed_globals: Iterable = ()) -> object:
    """`torch.load(path, weights_only=True)` on the CPU. Only tensors and plain containers are rebuilt;
    `allowed_globals` adds exactly those classes (e.g. numpy scalar types a file stores for metrics)."""
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"model {name!r}: {path} does not exist")
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            # mmap (zip-format files, torch >= 1.6): a training state's other networks and optimizer
            # states are never read into memory, only the tensors a family copies out.
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        # weights_only names the refused global in one of two phrasings: "Unsupported global: GLOBAL
        # __main__.NetG" or "Trying to load unsupported GLOBAL posix.getcwd whose module ... is blocked".
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if not found:  # not a pickle at all (the cause follows torch's advice about weights_only=False)
            cause = str(exc).partition("WeightsUnpickler error:")[2].strip() or str(exc)
            raise LoadError(f"model {name!r}: {path} is not a readable PyTorch file: "
                            f"{(cause.splitlines() or [type(exc).__name__])[0][:300]}") from None
        raise LoadError(f"model {name!r}: {path} holds a pickled object, not only tensors, and is not "
                        f"unpickled (Unsupported global: GLOBAL {found.group(1)}); save the state_dict "
                        "instead") from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise LoadError(f"model {name!r}: {path} is not a readable PyTorch file: "
                        f"{(str(exc).splitlines() or [type(exc).__name__])[0][:300]}") from None


def numpy_float64_globals() -> list:
    """The allow-list for metrics a training script stored as numpy.float64 (np.mean, sklearn's auc):
    numpy's scalar constructor under both the name numpy < 2 pickled it as (numpy.core.multiarray.scalar)
    and numpy 2's (numpy._core...), numpy.dtype, and the float64 dtype's class (the unpickler checks the
    class of the dtype whose state it sets). Arrays and every other numpy type stay refused."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
            np.dtype, type(np.dtype(np.float64))]


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = PARALLEL_PREFIX) -> dict[str, torch.Tensor]:
    """The keys without a (Distributed)DataParallel `module.` prefix, when every key has it."""
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix):]: value for key, value in state.items()}
    return dict(state)


def state_dict_at(name: str, path: Path, saved: object, keys: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """The state_dict at `saved[keys[0]][keys[1]]...`: a mapping of names to tensors, `module.` stripped."""
    where = "".join(f"[{key!r}]" for key in keys)
    state = saved
    for depth, key in enumerate(keys):
        if not isinstance(state, Mapping) or key not in state:
            found = ", ".join(sorted(map(str, state))[:8]) if isinstance(state, Mapping) else type(state).__name__
            inside = "".join(f"[{k!r}]" for k in keys[:depth]) or "the file"
            raise LoadError(f"model {name!r}: {path} has no {key!r} in {inside} (found: {found}); expected the "
                            f"state dict at {where}")
        state = state[key]
    if not isinstance(state, Mapping) or not state:
        raise LoadError(f"model {name!r}: {path}{where} is {type(state).__name__}, not a state dict")
    bad = [str(key) for key, value in state.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if bad:
        raise LoadError(f"model {name!r}: {path}{where} holds entries that are not tensors: {_shown(bad)}")
    return strip_prefix(state)


def load_exactly(name: str, path: Path, network: nn.Module, state: Mapping[str, torch.Tensor],
                 ignored: Iterable[str] = ()) -> nn.Module:
    """Copy `state` into `network` (float tensors as float32), refusing any missing, unexpected or
    mis-shaped key; keys in `ignored` (e.g. instance norms' running statistics) are dropped first."""
    state = {k: v for k, v in state.items() if k not in set(ignored)}
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
                 if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = [f"{what}: {_shown(keys)}" for what, keys in
                (("missing weights", missing), ("unexpected weights", unexpected), ("mis-shaped weights", misshaped))
                if keys]
    if problems:
        raise LoadError(f"model {name!r}: {path} does not fit {type(network).__name__} ({'; '.join(problems)})")
    network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return network


def require(name: str, path: Path, state: Mapping[str, torch.Tensor], key: str, ndim: int) -> torch.Tensor:
    """`state[key]` with `ndim` dimensions, for reading an architecture from its tensors."""
    value = state.get(key)
    if value is None:
        raise LoadError(f"model {name!r}: {path} does not fit: missing weights: {key}")
    if value.ndim != ndim:
        raise LoadError(f"model {name!r}: {path} does not fit: mis-shaped weights: {key} {tuple(value.shape)} "
                        f"(expected {ndim} dimensions)")
    return value

