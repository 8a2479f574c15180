"""Every model family, one line each: (task, family) -> the module that loads it.

A family module has `load(entry: ModelEntry, device) -> model`, the model
implementing its task's Protocol (models/<task>/interface.py) and carrying
`details` (models.repository.ModelDetails). Adding a family is one new module
plus one line here.

For Hugging Face directories (`family: transformers` in an entry) the family is
the `model_type` in the directory's config.json, never a guess from the files; a
captioning `model_type` without a line of its own is served by the generic
image-text-to-text family when transformers maps it to an image-text-to-text
model, and refused otherwise.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from models.repository import (
    AUDIO_TEXT_EMBEDDING,
    BUILTIN,
    CAPTIONING,
    IMAGE_TEXT_EMBEDDING,
    IMAGE_TO_IMAGE,
    SOUND_LOCALIZATION,
    TEXT_TO_IMAGE,
    TRANSFORMERS,
    ModelEntry,
    RepositoryError,
)

# A captioning model_type with no line of its own, served through AutoModelForImageTextToText.
GENERIC_CAPTIONING = "image-text-to-text"

FAMILIES: dict[tuple[str, str], str] = {
    (CAPTIONING, BUILTIN): "models.captioning.builtin",
    (CAPTIONING, "vision-encoder-decoder"): "models.captioning.hf_vision_encoder_decoder",
    (CAPTIONING, "blip"): "models.captioning.hf_blip",
    (CAPTIONING, "git"): "models.captioning.hf_git",
    (CAPTIONING, GENERIC_CAPTIONING): "models.captioning.hf_image_text_to_text",
    (IMAGE_TEXT_EMBEDDING, BUILTIN): "models.embedding.builtin",
    (IMAGE_TEXT_EMBEDDING, "clip"): "models.embedding.hf_dual_encoder",
    (IMAGE_TEXT_EMBEDDING, "siglip"): "models.embedding.hf_dual_encoder",
    (IMAGE_TEXT_EMBEDDING, "siglip2"): "models.embedding.hf_dual_encoder",
    (IMAGE_TEXT_EMBEDDING, "align"): "models.embedding.hf_dual_encoder",
    (AUDIO_TEXT_EMBEDDING, "clap"): "models.embedding.hf_clap",
    (SOUND_LOCALIZATION, BUILTIN): "models.audio.builtin",
    (SOUND_LOCALIZATION, "ezvsl"): "models.audio.ezvsl",
    (TEXT_TO_IMAGE, BUILTIN): "models.generation.text2image",
    (TEXT_TO_IMAGE, "dfgan"): "models.generation.dfgan",
    (IMAGE_TO_IMAGE, BUILTIN): "models.generation.image_to_image",
    (IMAGE_TO_IMAGE, "cyclegan-pix2pix"): "models.generation.cyclegan_pix2pix",
}
# Checks every loaded model passes before its service reports SERVING (task -> module with `self_test`).
INTERFACES: dict[str, str] = {
    CAPTIONING: "models.captioning.interface",
    IMAGE_TEXT_EMBEDDING: "models.embedding.interface",
    AUDIO_TEXT_EMBEDDING: "models.embedding.interface",
    IMAGE_TO_IMAGE: "models.generation.interface",
    TEXT_TO_IMAGE: "models.generation.interface",
    SOUND_LOCALIZATION: "models.audio.interface",
}


def model_type(directory: Path) -> str:
    """config.json's model_type: what the weights are, as written by save_pretrained."""
    path = Path(directory) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RepositoryError(f"{path} does not exist: a transformers directory holds what save_pretrained "
                              "writes") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RepositoryError(f"{path}: {exc}") from None
    kind = config.get("model_type") if isinstance(config, dict) else None
    if not kind:
        raise RepositoryError(f"{path} has no model_type")
    return str(kind)


def family_of(entry: ModelEntry) -> str:
    """The family that loads `entry`: as written, or from config.json for `transformers`."""
    if entry.family != TRANSFORMERS:
        if (entry.task, entry.family) not in FAMILIES:
            raise RepositoryError(f"{entry.origin}: no {entry.task} family {entry.family!r}; known: "
                                  f"{', '.join(sorted(f for t, f in FAMILIES if t == entry.task))}")
        return entry.family
    kind = model_type(entry.path)
    if (entry.task, kind) in FAMILIES:
        return kind
    if entry.task == CAPTIONING and (CAPTIONING, GENERIC_CAPTIONING) in FAMILIES:
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        if kind in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
            return GENERIC_CAPTIONING
    served = sorted(f for t, f in FAMILIES if t == entry.task and f != BUILTIN)
    raise RepositoryError(f"model {entry.name!r}: {entry.path / 'config.json'} says model_type {kind!r}, which no "
                          f"{entry.task} family serves (served: {', '.join(served)})")


def load(entry: ModelEntry, device):
    """The model `entry` describes, loaded strictly on `device`, implementing its task's Protocol."""
    family = family_of(entry)
    return importlib.import_module(FAMILIES[(entry.task, family)]).load(entry, device)


def self_test(task: str, model, input_warnings: bool = True) -> None:
    """Run the task's check on a synthetic input: finite outputs of the right shape, or an exception.
    `input_warnings=False` (a service with SYN_INPUT_WARNINGS=false, which never asks a model for its
    notes) leaves the notes out of the check, so the built-ins' compiled out-of-world check is never
    loaded there (numba: about 110 MB and 2.5 s per process)."""
    importlib.import_module(INTERFACES[task]).self_test(model, input_warnings=input_warnings)


def check_input_warnings(model, images, enabled: bool = True) -> None:
    """Part of each image task's self-test: the model's notes on its synthetic pictures are lists of
    strings. For the built-ins this also loads their compiled out-of-world check (numba, seconds)
    before the service reports SERVING rather than in its first call; not `enabled` (the self-test's
    `input_warnings`), nothing is asked."""
    if not enabled:
        return
    for image in images:
        notes = model.input_warnings(image)
        if not isinstance(notes, list) or not all(isinstance(note, str) for note in notes):
            raise RuntimeError(f"warm-up: input_warnings gave {notes!r}, not a list of strings")

