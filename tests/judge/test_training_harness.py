"""models.training: checkpoints (format, sha256, config, tied weights, concurrent manifest updates)
and the resumable, seeded loop."""

import json
import multiprocessing
import struct

import pytest
import torch
from torch import nn

from models.training import (
    CheckpointError, load_checkpoint, read_manifest, save_checkpoint, seed_everything, sha256_file, train_loop,
)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.body = nn.Linear(4, 4)
        self.out = nn.Linear(4, 11, bias=False)
        self.out.weight = self.embed.weight  # tied
        self.register_buffer("counter", torch.tensor([3.0]))


def _save(tmp_path, name="toy", model=None, config=None, **kw):
    model = model or Tied()
    return save_checkpoint(name, model, config=config or {"width": 4, "layers": (1, 2)}, metrics={"acc": 0.5},
                           command="python -m toy", data_seeds={"train": range(0, 10)}, directory=tmp_path, **kw)


def test_round_trip_and_manifest(tmp_path):
    seed_everything(0)
    model = Tied()
    path = _save(tmp_path, model=model, extra_tensors={"table": torch.arange(5)})
    assert path == tmp_path / "toy.safetensors"
    header_len = struct.unpack("<Q", path.read_bytes()[:8])[0]
    header = json.loads(path.read_bytes()[8:8 + header_len])  # safetensors: a JSON header, raw tensors, no pickle
    assert "embed.weight" in header and "out.weight" not in header and "__extra__.table" in header
    entry = read_manifest(tmp_path)["toy"]
    assert entry["sha256"] == sha256_file(path) and entry["file"] == "toy.safetensors"
    assert entry["config"] == {"width": 4, "layers": [1, 2]} and entry["metrics"] == {"acc": 0.5}
    assert entry["data_seeds"] == {"train": [0, 10]} and entry["command"] == "python -m toy"
    assert entry["parameter_count"] == sum(p.numel() for p in model.parameters())
    assert entry["tied"] == {"out.weight": "embed.weight"} and entry["created"]

    state, loaded = load_checkpoint("toy", expected_config={"width": 4, "layers": [1, 2]}, directory=tmp_path)
    assert set(state) == set(model.state_dict())
    fresh = Tied()
    fresh.load_state_dict(state)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)
    assert fresh.out.weight is fresh.embed.weight
    assert torch.equal(loaded["extra_tensors"]["table"], torch.arange(5))


def test_refusals(tmp_path):
    _save(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint 'other'"):
        load_checkpoint("other", directory=tmp_path)
    with pytest.raises(CheckpointError, match="width"):
        load_checkpoint("toy", expected_config={"width": 8, "layers": [1, 2]}, directory=tmp_path)
    with pytest.raises(CheckpointError, match="depth"):
        load_checkpoint("toy", expected_config={"width": 4, "layers": [1, 2], "depth": 2}, directory=tmp_path)
    path = tmp_path / "toy.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint("toy", directory=tmp_path)
    path.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint("toy", directory=tmp_path)


def _save_in_process(args):
    directory, index = args
    torch.manual_seed(index)
    save_checkpoint(f"m{index}", nn.Linear(3, 2), config={"i": index}, metrics={}, command="c", data_seeds={},
                    directory=directory)


def test_concurrent_saves_keep_every_entry(tmp_path):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_save_in_process, [(tmp_path, i) for i in range(12)])
    manifest = read_manifest(tmp_path)
    assert sorted(manifest) == sorted(f"m{i}" for i in range(12))
    for i in range(12):
        state, entry = load_checkpoint(f"m{i}", expected_config={"i": i}, directory=tmp_path)
        assert state["weight"].shape == (2, 3)


def _run(tmp_path, total, resume=True, config=None):
    seed_everything(1)
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.3), nn.Linear(8, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    evaluated = []

    def batches(start):
        step = start
        while True:
            g = torch.Generator().manual_seed(step)
            x = torch.randn(16, 3, generator=g)
            yield x, x.sum(dim=1, keepdim=True)
            step += 1

    def step_fn(batch, step):
        x, y = batch
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    def eval_fn(step):
        evaluated.append((step, model.training, torch.is_grad_enabled()))
        return {"mse": nn.functional.mse_loss(model(torch.ones(2, 3)), torch.full((2, 1), 3.0)).item()}

    result = train_loop(name="toy", model=model, optimizer=optimizer, scheduler=scheduler, batches=batches,
                        step_fn=step_fn, total_steps=total, eval_fn=eval_fn, eval_every=4, save_every=2,
                        run_dir=tmp_path, resume=resume, config=config or {"lr": 1e-2}, progress=False,
                        log=lambda line: None)
    return model, result, evaluated


def test_loop_is_seeded_and_resumable(tmp_path):
    straight, result, evaluated = _run(tmp_path / "a", 10)
    assert result.resumed_from == 0 and result.steps == 10
    assert [e[0] for e in evaluated] == [4, 8, 10] and all(not train and not grad for _, train, grad in evaluated)
    assert [h["step"] for h in result.history] == [4, 8, 10] and "mse" in result.last_metrics

    again, _, _ = _run(tmp_path / "b", 10)
    for a, b in zip(straight.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)  # same seed, same weights

    _run(tmp_path / "c", 6)  # "interrupted" after 6 steps
    resumed, result, evaluated = _run(tmp_path / "c", 10)
    assert result.resumed_from == 6 and [e[0] for e in evaluated] == [8, 10]
    assert [h["step"] for h in result.history] == [4, 6, 8, 10]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)  # dropout, optimiser and scheduler state all carried over

    with pytest.raises(CheckpointError, match="another config"):
        _run(tmp_path / "c", 12, config={"lr": 5e-3})
    fresh, result, _ = _run(tmp_path / "c", 10, resume=False)
    assert result.resumed_from == 0


def test_load_model_refuses_a_config_that_does_not_describe_the_weights(tmp_path):
    import torch

    from models.training import CheckpointError, load_model, save_checkpoint

    save_checkpoint("tiny", torch.nn.Linear(3, 2), config={"model": {"inputs": 3}}, metrics={}, command="test",
                    data_seeds={}, directory=tmp_path)
    model, entry = load_model("tiny", lambda c: torch.nn.Linear(c["model"]["inputs"], 2), directory=tmp_path)
    assert not model.training and entry["config"] == {"model": {"inputs": 3}}
    with pytest.raises(CheckpointError, match="does not match"):
        load_model("tiny", lambda c: torch.nn.Linear(4, 2), directory=tmp_path)
