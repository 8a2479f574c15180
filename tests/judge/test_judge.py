"""The judge: the training CLI's smoke run, the shipped checkpoint's accuracy on fresh scenes, input formats,
and refusal of a mismatched checkpoint."""

import json
import shutil

import numpy as np
import pytest
import torch

from models.judge import HEADS, load_judge
from models.judge.train import main as train_main
from models.shapesworld import EVAL_SEEDS, render_scene
from models.training import CHECKPOINT_DIR, CheckpointError, read_manifest

# Fresh held-out scenes: neither the final evaluation (EVAL_SEEDS[:2000]) nor the monitor set.
FRESH = EVAL_SEEDS[900_000:900_150]
THRESHOLD = 0.98  # per head and domain on 150 scenes (the manifest records >= 0.99 on 2000)


@pytest.fixture(scope="module")
def judge():
    return load_judge()


def _truth(scenes):
    return {"shape": [s.objects[0].shape for s in scenes], "colour": [s.objects[0].colour for s in scenes],
            "size": [s.objects[0].size for s in scenes], "domain": [s.domain for s in scenes]}


def test_smoke_training_writes_a_loadable_checkpoint(tmp_path):
    assert train_main(["--smoke", "--quiet", "--checkpoint-dir", str(tmp_path), "--run-dir", str(tmp_path / "run")]) == 0
    entry = read_manifest(tmp_path)["judge"]
    assert entry["command"].startswith("python -m models.judge.train") and "--smoke" in entry["command"]
    assert {"clean_day_shape", "clean_night_colour", "alt_day_size", "perturbed_night_domain"} <= set(entry["metrics"])
    assert entry["data_seeds"]["train"][1] <= EVAL_SEEDS.start <= entry["data_seeds"]["eval"][0]
    smoke = load_judge(directory=tmp_path)
    out = smoke.predict(np.zeros((3, 64, 64, 3), np.uint8))
    assert set(out) == set(HEADS) and all(len(v) == 3 and set(v) <= set(HEADS[k]) for k, v in out.items())
    assert (tmp_path / "run" / "state.pt").exists()


def test_shipped_checkpoint_is_small_and_documented():
    entry = read_manifest()["judge"]
    path = CHECKPOINT_DIR / entry["file"]
    assert path.stat().st_size < 2_000_000 and entry["parameter_count"] < 500_000
    for domain in ("day", "night"):
        for head in HEADS:
            assert entry["metrics"][f"clean_{domain}_{head}"] >= 0.99, (domain, head)
    assert entry["metrics"]["eval_scenes_per_domain"] >= 2000


@pytest.mark.parametrize("domain", ["day", "night"])
def test_shipped_judge_scores_fresh_scenes(judge, domain):
    scenes = [render_scene(seed, objects=1, domain=domain) for seed in FRESH]
    predicted = judge.predict(np.stack([s.image for s in scenes]))
    truth = _truth(scenes)
    for head in HEADS:
        accuracy = np.mean([p == t for p, t in zip(predicted[head], truth[head])])
        assert accuracy >= THRESHOLD, (domain, head, accuracy)


def test_input_formats_agree(judge):
    scenes = [render_scene(seed, objects=1) for seed in FRESH[:40]]
    uint8 = np.stack([s.image for s in scenes])
    floats = torch.from_numpy(uint8).permute(0, 3, 1, 2).float() / 255
    assert judge.predict(uint8) == judge.predict(floats) == judge.predict(torch.from_numpy(uint8))
    assert judge.predict(list(uint8)) == judge.predict(uint8) == judge.predict(list(floats))
    assert judge.predict(uint8[0])["shape"] == [judge.predict(uint8)["shape"][0]]
    with pytest.raises(ValueError):
        judge.predict(np.zeros((2, 64, 64, 4), np.uint8))


def test_larger_canvases_are_resized_and_still_judged(judge):
    scenes = [render_scene(seed, size=128, objects=1) for seed in FRESH[:60]]
    predicted = judge.predict(np.stack([s.image for s in scenes]))
    truth = _truth(scenes)
    for head in HEADS:
        assert np.mean([p == t for p, t in zip(predicted[head], truth[head])]) >= 0.9, head


def test_mismatched_checkpoint_is_refused(tmp_path):
    entry = read_manifest()["judge"]
    shutil.copy(CHECKPOINT_DIR / entry["file"], tmp_path / entry["file"])
    changed = json.loads(json.dumps(entry))
    changed["config"]["widths"] = [8, 8, 8]
    (tmp_path / "manifest.json").write_text(json.dumps({"judge": changed}))
    with pytest.raises(CheckpointError, match="widths"):
        load_judge(directory=tmp_path)
    changed = json.loads(json.dumps(entry))
    changed["sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps({"judge": changed}))
    with pytest.raises(CheckpointError, match="sha256"):
        load_judge(directory=tmp_path)
