"""Loading Hugging Face transformers directories strictly and safely (shared by every HF family).

* only safetensors weights are read (`use_safetensors=True`): a pickled
  `pytorch_model.bin` is never unpickled, the load fails instead;
* every weight must fit: any missing, unexpected or mis-shaped key stops the load
  with the model's name and the first offending keys (transformers'
  `output_loading_info`), so a directory behind the wrong class is never served
  half random;
* nothing is downloaded (`local_files_only=True`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from models.repository import ModelEntry, RepositoryError

WEIGHT_SUFFIXES = (".safetensors", ".bin")
SHOWN_KEYS = 5
# Non-persistent buffers some architectures list as missing although they are computed, not stored.
COMPUTED_BUFFERS = ("position_ids", "token_type_ids", "position_embedding_ids")


class LoadError(RepositoryError):
    """The weights of an entry do not fit the class that should hold them."""


def weights_fingerprint(directory: Path) -> str:
    """sha256 over the weight files' names and bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _shown(keys) -> str:
    keys = sorted(str(k) for k in keys)
    more = f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else ""
    return ", ".join(keys[:SHOWN_KEYS]) + more


def strict_load(cls, entry: ModelEntry, device, **kwargs):
    """`cls.from_pretrained(entry.path)` in eval mode on `device`, refusing any weight that does not fit."""
    directory = Path(entry.path)
    if not directory.is_dir():
        raise LoadError(f"model {entry.name!r}: {directory} is not a directory")
    if not any(directory.glob("*.safetensors")):
        raise LoadError(f"model {entry.name!r}: {directory} holds no .safetensors weights (pickled .bin files are "
                        "not loaded; convert them with save_pretrained(safe_serialization=True))")
    logging.getLogger("transformers.modeling_utils").setLevel(logging.ERROR)
    try:
        # ignore_mismatched_sizes: transformers then reports the mis-shaped keys instead of raising
        # without naming them; any reported key fails the load below.
        model, info = cls.from_pretrained(directory, output_loading_info=True, use_safetensors=True,
                                          local_files_only=True, ignore_mismatched_sizes=True, **kwargs)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError, AttributeError) as exc:
        raise LoadError(f"model {entry.name!r}: {cls.__name__} cannot load {directory}: "
                        f"{str(exc).splitlines()[0][:400]}") from None
    missing = [k for k in info.get("missing_keys", []) if not str(k).endswith(COMPUTED_BUFFERS)]
    problems = []
    if missing:
        problems.append(f"missing weights: {_shown(missing)}")
    if info.get("unexpected_keys"):
        problems.append(f"unexpected weights: {_shown(info['unexpected_keys'])}")
    if info.get("mismatched_keys"):
        problems.append(f"mis-shaped weights: {_shown(k[0] if isinstance(k, tuple) else k for k in info['mismatched_keys'])}")
    if info.get("error_msgs"):
        problems.append(f"errors: {'; '.join(str(e) for e in info['error_msgs'])[:300]}")
    if problems:
        raise LoadError(f"model {entry.name!r}: {directory} does not fit {cls.__name__} "
                        f"({'; '.join(problems)}); check the entry's family and the directory")
    return model.to(device).eval()


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def image_processor(directory: Path):
    """The directory's image processor, or None when it has no preprocessor_config.json."""
    from transformers import AutoImageProcessor

    if not (Path(directory) / "preprocessor_config.json").exists():
        return None
    return AutoImageProcessor.from_pretrained(directory, local_files_only=True)
