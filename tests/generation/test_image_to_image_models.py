"""The image-to-image models in process: the loader's contract, eval-mode behaviour, batch
independence, and that training (smoke runs of both CLIs) writes checkpoints the loader accepts.

The quality of the shipped checkpoints, and that they reproduce the metrics their manifest
records, is test_image_to_image_quality.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.generation.cyclegan import CycleGANConfig, ResnetGenerator
from models.generation.image_to_image import (
    MODELS, ImageToImageModel, available_image_to_image_models, load_image_to_image,
)
from models.generation.layers import ImagePool
from models.generation.pix2pix import Pix2PixConfig, UNetGenerator
from models.shapesworld import EVAL_SEEDS, render_scene
from models.training import CheckpointError, read_manifest, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("sketch2photo", "day2night", "night2day")
SHIPPED = [n for n in NAMES if n in available_image_to_image_models()]


def held_out_batch(count: int = 6) -> torch.Tensor:
    scenes = [render_scene(EVAL_SEEDS.start + i, size=64) for i in range(count)]
    images = np.stack([s.image if i % 2 else s.sketch for i, s in enumerate(scenes)])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def small_networks() -> dict[str, tuple[dict, torch.nn.Module]]:
    """Untrained networks of each kind, small enough to build in milliseconds."""
    torch.manual_seed(0)
    p2p = Pix2PixConfig(ngf=4, ndf=4)
    cyc = CycleGANConfig(ngf=4, n_blocks=1, ndf=4)
    return {"sketch2photo": (p2p.to_dict(), UNetGenerator(p2p)), "day2night": (cyc.to_dict(), ResnetGenerator(cyc)),
            "night2day": (cyc.to_dict(), ResnetGenerator(cyc))}


@pytest.fixture
def checkpoint_dir(tmp_path) -> Path:
    """A checkpoint directory holding small untrained networks under the three names."""
    for name, (config, network) in small_networks().items():
        save_checkpoint(name, network, config=config, metrics={}, command="test", data_seeds={}, directory=tmp_path)
    return tmp_path


# --- the loader ---------------------------------------------------------------------------------

def test_models_are_exactly_the_agreed_names():
    assert sorted(MODELS) == sorted(NAMES)


def test_unknown_names_raise_key_error(checkpoint_dir):
    with pytest.raises(KeyError, match="no-such-model"):
        load_image_to_image("no-such-model", "cpu", directory=checkpoint_dir)


def test_missing_checkpoints_raise_checkpoint_error(tmp_path):
    assert available_image_to_image_models(tmp_path) == []
    for name in NAMES:
        with pytest.raises(CheckpointError, match=name):
            load_image_to_image(name, "cpu", directory=tmp_path)


def test_available_models_are_those_in_the_manifest_with_a_file(checkpoint_dir):
    assert available_image_to_image_models(checkpoint_dir) == list(NAMES)
    (checkpoint_dir / "day2night.safetensors").unlink()
    assert available_image_to_image_models(checkpoint_dir) == ["sketch2photo", "night2day"]


def test_loaded_models_carry_name_entry_and_an_eval_mode_network(checkpoint_dir):
    for name in NAMES:
        model = load_image_to_image(name, torch.device("cpu"), directory=checkpoint_dir)
        assert model.name == name
        assert model.manifest_entry["sha256"] == read_manifest(checkpoint_dir)[name]["sha256"]
        assert not model.network.training
        assert not any(p.requires_grad for p in model.network.parameters())


def test_a_checkpoint_of_the_wrong_kind_is_refused(checkpoint_dir):
    # sketch2photo's pix2pix weights copied under the name of a CycleGAN direction.
    manifest = json.loads((checkpoint_dir / "manifest.json").read_text())
    manifest["day2night"] = manifest["sketch2photo"]
    (checkpoint_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="pix2pix"):
        load_image_to_image("day2night", "cpu", directory=checkpoint_dir)


def test_a_config_that_does_not_fit_the_weights_is_refused(checkpoint_dir):
    _, network = small_networks()["sketch2photo"]
    save_checkpoint("sketch2photo", network, config=Pix2PixConfig(ngf=8).to_dict(), metrics={}, command="test",
                    data_seeds={}, directory=checkpoint_dir)
    with pytest.raises(CheckpointError, match="does not match the network its config describes"):
        load_image_to_image("sketch2photo", "cpu", directory=checkpoint_dir)


def test_a_corrupt_file_is_refused(checkpoint_dir):
    path = checkpoint_dir / "night2day.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_image_to_image("night2day", "cpu", directory=checkpoint_dir)


# --- translate ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_translate_keeps_the_shape_and_the_range(checkpoint_dir, name):
    model = load_image_to_image(name, "cpu", directory=checkpoint_dir)
    out = model.translate(held_out_batch(3))
    assert out.shape == (3, 3, 64, 64) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("bad", [torch.zeros(3, 64, 64), torch.zeros(1, 1, 64, 64), torch.zeros(1, 3, 32, 32),
                                 torch.zeros(1, 3, 64, 64, dtype=torch.uint8)])
def test_translate_refuses_other_layouts(checkpoint_dir, bad):
    model = load_image_to_image("sketch2photo", "cpu", directory=checkpoint_dir)
    with pytest.raises(ValueError):
        model.translate(bad)


@pytest.mark.parametrize("name", SHIPPED or [pytest.param("none", marks=pytest.mark.skip("nothing shipped yet"))])
def test_train_and_eval_mode_compute_the_same_function(name):
    # The pix2pix trap: if norms or dropout behaved differently at test time, what evaluation
    # measured (eval mode) would not be what training optimised.
    model = load_image_to_image(name, "cpu")
    x = held_out_batch() * 2 - 1
    with torch.no_grad():
        evaluated = model.network.eval()(x)
        trained = model.network.train()(x)
    model.network.eval()
    torch.testing.assert_close(trained, evaluated, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", SHIPPED or [pytest.param("none", marks=pytest.mark.skip("nothing shipped yet"))])
def test_an_image_translates_the_same_alone_and_among_others(name):
    # The service batches requests dynamically: batch-mates must not change an answer.
    model = load_image_to_image(name, "cpu")
    batch = held_out_batch(6)
    together = model.translate(batch)
    for i in (0, 3):
        torch.testing.assert_close(model.translate(batch[i:i + 1]), together[i:i + 1], atol=1e-5, rtol=0)
    assert not torch.equal(together[0], together[1])  # different inputs give different answers


def test_the_wrapper_leaves_a_network_in_training_trainable():
    network = UNetGenerator(Pix2PixConfig(ngf=4))
    ImageToImageModel("sketch2photo", network).translate(held_out_batch(1))
    assert all(p.requires_grad for p in network.parameters())


def test_the_image_pool_keeps_its_history_in_its_state_dict():
    torch.manual_seed(0)
    pool = ImagePool(size=4, shape=(3, 2, 2))
    first = torch.rand(4, 3, 2, 2)
    assert torch.equal(pool.query(first), first)  # filling up: images pass through
    restored = ImagePool(size=4, shape=(3, 2, 2))
    restored.load_state_dict(pool.state_dict())
    torch.manual_seed(1)
    answer = pool.query(torch.rand(16, 3, 2, 2))
    torch.manual_seed(1)
    assert torch.equal(restored.query(torch.rand(16, 3, 2, 2)), answer)
    history = {tuple(img.flatten().tolist()) for img in first}
    assert any(tuple(img.flatten().tolist()) in history for img in answer)  # some came from the history


# --- training smoke runs ------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("module, names", [("models.generation.train_pix2pix", ["sketch2photo"]),
                                           ("models.generation.train_cyclegan", ["day2night", "night2day"])])
def test_a_smoke_training_run_writes_loadable_checkpoints_and_resumes(tmp_path, module, names):
    command = [sys.executable, "-m", module, "--smoke", "--checkpoint-dir", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert available_image_to_image_models(tmp_path) == names
    for name in names:
        model = load_image_to_image(name, "cpu", directory=tmp_path)
        entry = read_manifest(tmp_path)[name]
        assert entry["command"].startswith(f"python -m {module} --smoke")
        assert entry["metrics"]["steps"] == 4
        assert model.translate(held_out_batch(2)).shape == (2, 3, 64, 64)
    # Re-running the same command continues the saved run instead of starting over.
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from step 4" in again.stdout
