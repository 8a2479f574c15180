"""The shipped checkpoint: vocabulary inside its config, metrics in the manifest, loader checks;
the vocabulary; and the training script's --smoke mode producing a loadable checkpoint."""

from __future__ import annotations

import subprocess
import sys

import pytest

from models.captioning.checkpoint import load_captioner
from models.captioning.data import build_vocabulary, encode_batch, taught_caption
from models.captioning.vocabulary import SPECIALS, Vocabulary
from models.shapesworld import VOCABULARY
from models.training import REPO_ROOT, CheckpointError, read_manifest


def test_vocabulary_from_training_captions():
    vocab = build_vocabulary(2000)
    assert vocab.tokens[:4] == SPECIALS
    assert set(vocab.words) == set(VOCABULARY)
    ids = vocab.encode("a small red circle on the left")
    assert ids[0] == vocab.start and ids[-1] == vocab.end
    assert vocab.decode(ids) == "a small red circle on the left".split()
    assert vocab.encode("a tiny circle")[2] == vocab.unk
    batch = encode_batch(["a red circle", "a small red circle on the left"], vocab)
    assert batch.shape == (2, 9) and (batch[0, 5:] == vocab.pad).all()
    with pytest.raises(ValueError):
        Vocabulary(["a", "b"])


def test_taught_caption_names_the_left_or_upper_object_first():
    assert taught_caption("a red circle right of a blue square") == "a blue square left of a red circle"
    assert taught_caption("a red circle below a blue square") == "a blue square above a red circle"
    for same in ["a red circle left of a blue square", "a red circle above a blue square",
                 "a small red circle on the right", "a large red circle at the bottom"]:
        assert taught_caption(same) == same


def test_shipped_checkpoint_and_manifest():
    entry = read_manifest()["captioning"]
    config = entry["config"]["model"]
    assert config["vocabulary"][:4] == list(SPECIALS) and set(config["vocabulary"][4:]) == set(VOCABULARY)
    metrics = entry["metrics"]
    assert metrics["bleu_4"] >= 0.6 and metrics["attribute_accuracy_one_object"] >= 0.95
    assert metrics["pointing_overlap"] >= 0.8 and metrics["pointing_overlap"] > 3 * metrics["pointing_overlap_chance"]
    assert metrics["bleu_4"] > metrics["baseline_bleu_4"] + 0.4
    assert entry["size_bytes"] < 8 << 20
    loaded = load_captioner()
    assert loaded.sha256 == entry["sha256"] and loaded.model.grid_shape == (8, 8)


def test_loader_refuses_a_corrupt_file(tmp_path):
    (tmp_path / "manifest.json").write_text((REPO_ROOT / "models/checkpoints/manifest.json").read_text())
    data = (REPO_ROOT / "models/checkpoints/captioning.safetensors").read_bytes()
    (tmp_path / "captioning.safetensors").write_bytes(data[:-8] + b"\x00" * 8)
    with pytest.raises(CheckpointError):
        load_captioner(directory=tmp_path)


@pytest.mark.slow
def test_training_smoke_writes_a_loadable_checkpoint():
    done = subprocess.run([sys.executable, "-m", "models.captioning.train", "--smoke"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    saved = [line for line in done.stdout.splitlines() if line.startswith("saved ")]
    directory = saved[-1].split()[1].rsplit("/", 1)[0]
    loaded = load_captioner(directory=directory)
    assert loaded.metrics["train_steps"] == 4
