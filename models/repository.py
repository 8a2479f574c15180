"""The model repository: which models a service serves, each as one entry.

A repository is a directory (SYN_MODEL_REPOSITORY, default: the shipped
checkpoints in models/checkpoints). It holds

* `<name>.model.yaml` files, one per served model::

      task: captioning          # one of TASKS
      family: transformers      # "transformers": the family is read from config.json's model_type;
                                # or a family name (see models/families.py), "builtin" for our checkpoints
      path: blip-base           # relative to the repository, or absolute
      default: true             # the model a request without `model` gets (per task)
      options:                  # family options, e.g. image_size, mean, std, length_penalty
        image_size: 384

  The name is the file name without `.model.yaml` unless the entry sets `name:`.
* the built-in `manifest.json` (models/training.py): every shipped checkpoint whose
  name is in SHIPPED_TASKS is an entry of family `builtin`, so the default repository
  serves the built-ins without entry files.

Nothing here imports a network: entries are plain data, models/families.py loads them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CAPTIONING = "captioning"
IMAGE_TEXT_EMBEDDING = "image-text-embedding"
AUDIO_TEXT_EMBEDDING = "audio-text-embedding"
IMAGE_TO_IMAGE = "image-to-image"
TEXT_TO_IMAGE = "text-to-image"
SOUND_LOCALIZATION = "sound-localization"
TASKS = (CAPTIONING, IMAGE_TEXT_EMBEDDING, AUDIO_TEXT_EMBEDDING, IMAGE_TO_IMAGE, TEXT_TO_IMAGE, SOUND_LOCALIZATION)

# The shipped checkpoints a manifest implies entries for (the judge is an evaluation tool, not served).
SHIPPED_TASKS = {
    "captioning": CAPTIONING,
    "embedding": IMAGE_TEXT_EMBEDDING,
    "localization": SOUND_LOCALIZATION,
    "text2image": TEXT_TO_IMAGE,
    "sketch2photo": IMAGE_TO_IMAGE,
    "day2night": IMAGE_TO_IMAGE,
    "night2day": IMAGE_TO_IMAGE,
}
ENTRY_SUFFIX = ".model.yaml"
BUILTIN = "builtin"
# The family is read from the directory's config.json (model_type).
TRANSFORMERS = "transformers"
# A reference implementation's .pth file (DF-GAN, pix2pix/CycleGAN, EZ-VSL), read with weights_only.
PYTORCH_CHECKPOINT = "pytorch-checkpoint"
ENTRY_KEYS = {"name", "task", "family", "path", "default", "options"}


class RepositoryError(Exception):
    """An entry that cannot be read or does not describe a servable model."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    family: str
    # The weights: a checkpoint file (builtin) or a directory (transformers).
    path: Path
    default: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    # Where the entry came from (an entry file, a manifest, a SYN_* shorthand), for error messages.
    origin: str = ""
    # The directory relative file options are read from (the entry file's); None: the weights' directory.
    base: Path | None = None

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def path_option(self, key: str) -> Path:
        """A required file option (e.g. a text encoder beside the weights): relative to the entry file's
        directory, like `path`."""
        value = self.options.get(key)
        if not value or not isinstance(value, str):
            raise RepositoryError(f"{self.origin}: model {self.name!r} needs options.{key}, a file path")
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base or Path(self.path).parent) / path


@dataclass
class ModelDetails:
    """What a loaded model tells ListModels about itself."""

    family: str
    source: str
    sha256: str = ""
    metrics: dict = field(default_factory=dict)
    parameter_count: int = 0
    # Identifies the weights; embedding collections refuse vectors from other weights under the same name.
    fingerprint: str = ""
    # A finer name than the family, e.g. "vision-encoder-decoder (deit + gpt2)".
    architecture: str = ""
    # Where the weights came from, for ListModels: BUILTIN, TRANSFORMERS or PYTORCH_CHECKPOINT;
    # empty: BUILTIN for the builtin family, TRANSFORMERS otherwise.
    backend: str = ""
    # What a caller should know that the fields above do not say (ListModels' `notes`), e.g. why a
    # captioner's words carry no attention map.
    notes: str = ""


def check_entry(entry: ModelEntry) -> ModelEntry:
    if not entry.name or "/" in entry.name:
        raise RepositoryError(f"{entry.origin}: bad model name {entry.name!r}")
    if entry.task not in TASKS:
        raise RepositoryError(f"{entry.origin}: task {entry.task!r} is not one of {', '.join(TASKS)}")
    if not entry.family:
        raise RepositoryError(f"{entry.origin}: no family (use {TRANSFORMERS!r} for a Hugging Face directory)")
    if not isinstance(entry.options, dict):
        raise RepositoryError(f"{entry.origin}: options must be a mapping")
    return entry


def read_entry(path: Path) -> ModelEntry:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RepositoryError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise RepositoryError(f"{path}: an entry is a mapping of {', '.join(sorted(ENTRY_KEYS))}")
    unknown = set(data) - ENTRY_KEYS
    if unknown:
        raise RepositoryError(f"{path}: unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(ENTRY_KEYS))})")
    if "path" not in data:
        raise RepositoryError(f"{path}: no path")
    weights = Path(str(data["path"])).expanduser()
    if not weights.is_absolute():
        weights = path.parent / weights
    return check_entry(ModelEntry(
        name=str(data.get("name") or path.name[: -len(ENTRY_SUFFIX)]), task=str(data.get("task", "")),
        family=str(data.get("family", "")), path=weights, default=bool(data.get("default", False)),
        options=data.get("options") or {}, origin=str(path), base=path.parent))


def builtin_entry(name: str, task: str, directory: Path, origin: str) -> ModelEntry:
    """A shipped-format checkpoint `name` in `directory` (its manifest.json says which file)."""
    return ModelEntry(name, task, BUILTIN, Path(directory) / f"{name}.safetensors", origin=origin)


def manifest_names(directory: Path) -> list[str]:
    path = Path(directory) / "manifest.json"
    if not path.exists():
        return []
    try:
        return sorted(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as exc:
        raise RepositoryError(f"{path} is not valid JSON: {exc}") from None


def read_repository(directory: Path) -> list[ModelEntry]:
    """Every entry of the repository: the manifest's shipped checkpoints, then the entry files by name."""
    directory = Path(directory)
    entries = [builtin_entry(name, SHIPPED_TASKS[name], directory, f"{directory / 'manifest.json'}")
               for name in manifest_names(directory) if name in SHIPPED_TASKS]
    if directory.is_dir():
        entries += [read_entry(path) for path in sorted(directory.glob("*" + ENTRY_SUFFIX))]
    seen: dict[str, ModelEntry] = {}
    for entry in entries:
        if entry.name in seen:
            raise RepositoryError(f"model {entry.name!r} is defined twice: {seen[entry.name].origin} and {entry.origin}")
        seen[entry.name] = entry
    return entries
