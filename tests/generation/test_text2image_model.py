"""The text2image model code without a server: tokenizer, encoder, generator, loader, training smoke run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from models.generation.text2image import Generator, Text2Image, Text2ImageConfig, load_text2image
from models.generation.text_encoder import Tokenizer, split_words
from models.shapesworld import VOCABULARY
from models.training import CheckpointError, read_manifest
from tests.servers import REPO_ROOT


def test_words_are_lower_cased_and_punctuation_is_dropped():
    assert split_words("  A LARGE, red circle!\n") == ["a", "large", "red", "circle"]
    tokenizer = Tokenizer(VOCABULARY)
    ids, unknown = tokenizer.encode("a large red circle with sparkles")
    assert [tokenizer.words[i] for i in ids] == ["a", "large", "red", "circle"]
    assert unknown == ["with", "sparkles"]


def test_a_captions_embedding_does_not_depend_on_its_batch_mates():
    torch.manual_seed(0)
    model = Text2Image(Text2ImageConfig(vocabulary=tuple(VOCABULARY))).eval()
    with torch.no_grad():
        alone = model.embed(["a red circle"])
        batched = model.embed(["a red circle", "a large blue cross on the left", "a"])
    torch.testing.assert_close(alone[0], batched[0], rtol=0, atol=1e-6)


def test_the_layered_generator_paints_a_64px_image_in_range():
    torch.manual_seed(0)
    generator = Generator(Text2ImageConfig(vocabulary=("a",))).eval()
    with torch.no_grad():
        images = generator(torch.randn(3, 64), torch.randn(3, 64))
    assert images.shape == (3, 3, 64, 64)
    assert images.min() >= -1 and images.max() <= 1


def test_the_shipped_checkpoint_loads_and_draws():
    model = load_text2image("cpu")
    assert not model.training
    assert model.manifest_entry["sha256"] == read_manifest()["text2image"]["sha256"]
    images = model.generate(["a small green square"], torch.randn(1, model.config.noise_dim))
    assert images.shape == (1, 3, 64, 64) and 0 <= images.min() and images.max() <= 1


def test_a_checkpoint_that_does_not_fit_its_config_is_refused(tmp_path):
    source = REPO_ROOT / "models" / "checkpoints"
    (tmp_path / "text2image.safetensors").write_bytes((source / "text2image.safetensors").read_bytes())
    entry = read_manifest()["text2image"]
    entry["config"]["ngf"] = 48
    (tmp_path / "manifest.json").write_text(json.dumps({"text2image": entry}))
    with pytest.raises(CheckpointError):
        load_text2image("cpu", tmp_path)


def test_training_smoke_run_writes_a_loadable_checkpoint_and_resumes(tmp_path):
    command = [sys.executable, "-m", "models.generation.train_text2image", "--smoke", "--checkpoint-dir", str(tmp_path)]
    first = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    model = load_text2image("cpu", tmp_path)
    assert model.manifest_entry["metrics"]["caption_encoder_accuracy"] >= 0
    # The loop saved its state; the same command continues from it instead of starting over.
    second = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0
    assert "resuming from step 6" in second.stdout + second.stderr
