"""Same seed, same bytes; domains pair up; the Dataset and the CLI agree with render_scene."""

import json

import numpy as np
import pytest
import soundfile
from PIL import Image

from models.shapesworld import EVAL_SEEDS, ShapesWorldDataset, TRAIN_SEEDS, render_objects, render_scene
from models.shapesworld.cli import main as cli_main

ARRAYS = ("image", "image_other_domain", "sketch", "mask", "audio")


def _assert_same(a, b):
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name
    assert a.captions == b.captions and a.domain == b.domain and a.sounding_index == b.sounding_index
    assert [o.to_json() for o in a.objects] == [o.to_json() for o in b.objects]


@pytest.mark.parametrize("seed", [0, 7, 123_456, 1_000_001, 1_999_999])
def test_same_seed_same_bytes(seed):
    first = render_scene(seed)
    np.random.seed(seed + 1)  # global numpy state must not matter
    np.random.random(17)
    _assert_same(first, render_scene(seed))


def test_different_seeds_differ():
    images = {render_scene(seed).image.tobytes() for seed in range(50)}
    assert len(images) == 50


def test_dtypes_and_shapes():
    scene = render_scene(3, size=96)
    assert scene.image.dtype == np.uint8 and scene.image.shape == (96, 96, 3)
    assert scene.image_other_domain.shape == scene.sketch.shape == (96, 96, 3)
    assert scene.mask.dtype == np.bool_ and scene.mask.shape == (96, 96)
    assert scene.audio.dtype == np.float32 and scene.audio.shape == (16000,)
    for obj in scene.objects:
        assert obj.mask.shape == (96, 96) and obj.mask.dtype == np.bool_


def test_other_domain_is_the_same_scene():
    for seed in range(20):
        day, night = render_scene(seed, domain="day"), render_scene(seed, domain="night")
        assert day.domain == "day" and night.domain == "night"
        assert day.image_other_domain.tobytes() == night.image.tobytes()
        assert night.image_other_domain.tobytes() == day.image.tobytes()
        assert day.sketch.tobytes() == night.sketch.tobytes()
        assert [o.to_json() for o in day.objects] == [o.to_json() for o in night.objects]
        assert np.array_equal(day.day_image, night.day_image)


def test_mixed_choices_are_balanced_and_forced_choices_hold():
    scenes = [render_scene(seed) for seed in range(400)]
    two = sum(len(s.objects) == 2 for s in scenes) / len(scenes)
    night = sum(s.domain == "night" for s in scenes) / len(scenes)
    assert 0.4 < two < 0.6 and 0.4 < night < 0.6
    assert all(len(render_scene(s, objects=1).objects) == 1 for s in range(30))
    assert all(len(render_scene(s, objects=2).objects) == 2 for s in range(30))


def test_render_objects_reproduces_the_scene():
    for seed in range(10):
        scene = render_scene(seed)
        again = render_objects(scene.objects, scene.size, scene.domain, seed)
        assert again.tobytes() == scene.image.tobytes()
        assert render_objects(scene.objects, scene.size, "sketch", seed).tobytes() == scene.sketch.tobytes()


def test_invalid_arguments_are_refused():
    for bad in (31, 257, 64.5):
        with pytest.raises(ValueError):
            render_scene(0, size=bad)
    with pytest.raises(ValueError):
        render_scene(0, objects=3)
    with pytest.raises(ValueError):
        render_scene(0, domain="dusk")
    with pytest.raises(ValueError):
        render_scene(-1)


def test_dataset_matches_render_scene():
    dataset = ShapesWorldDataset(range(1_000_000, 1_000_004), size=64)
    assert len(dataset) == 4
    for i in range(4):
        item, scene = dataset[i], render_scene(1_000_000 + i)
        image = (item["image"].permute(1, 2, 0) * 255).round().byte().numpy()
        assert image.tobytes() == scene.image.tobytes()
        other = (item["image_other_domain"].permute(1, 2, 0) * 255).round().byte().numpy()
        assert other.tobytes() == scene.image_other_domain.tobytes()
        assert np.array_equal(item["mask"][0].numpy() > 0.5, scene.mask)
        assert np.array_equal(item["audio"].numpy(), scene.audio)
        assert item["caption"] == scene.captions[0]
        assert int(item["num_objects"]) == len(scene.objects)
        assert int(item["sounding_index"]) == scene.sounding_index
        for k, obj in enumerate(scene.objects):
            assert item["bbox"][k].tolist() == list(obj.bbox)
            assert item["centre"][k].tolist() == list(obj.centre)


def test_dataset_partial_keys_render_the_same_pixels():
    full = ShapesWorldDataset(range(10, 14), objects=1, domain="night")
    light = ShapesWorldDataset(range(10, 14), objects=1, domain="night", keys=("image", "shape", "colour"))
    for i in range(4):
        a, b = full[i], light[i]
        assert set(b) == {"image", "shape", "colour"}
        assert a["image"].equal(b["image"]) and a["shape"].equal(b["shape"])


def test_cli_writes_the_same_scenes(tmp_path):
    for out in (tmp_path / "a", tmp_path / "b"):
        assert cli_main(["generate", "--out", str(out), "--count", "6", "--seed", "1000000", "--quiet"]) == 0
    for name in ("scenes.jsonl", "images/1000003.png", "audio/1000005.wav", "masks/1000002.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # Equal bytes must not depend on both runs falling in the same second: no timestamped PEAK chunk.
    wav = (tmp_path / "a" / "audio/1000005.wav").read_bytes()
    assert wav[:4] == b"RIFF" and b"PEAK" not in wav[:256]
    samples, rate = soundfile.read(tmp_path / "a" / "audio/1000005.wav", dtype="float32")
    assert rate == 16000 and np.array_equal(samples, render_scene(1_000_005).audio.astype(np.float32))
    records = [json.loads(line) for line in (tmp_path / "a" / "scenes.jsonl").read_text().splitlines()]
    assert [r["seed"] for r in records] == list(range(1_000_000, 1_000_006))
    for record in records:
        scene = render_scene(record["seed"])
        for key in ("id", "seed", "image", "image_other_domain", "sketch", "mask", "audio", "sounding_index",
                    "domain", "captions", "objects"):
            assert key in record
        assert record["captions"] == scene.captions and record["domain"] == scene.domain
        for obj in record["objects"]:
            assert set(obj) >= {"shape", "colour", "size", "bbox", "centre"}
        png = np.asarray(Image.open(tmp_path / "a" / record["image"]))
        assert png.tobytes() == scene.image.tobytes()
        other = np.asarray(Image.open(tmp_path / "a" / record["image_other_domain"]))
        assert other.tobytes() == scene.image_other_domain.tobytes()
        mask = np.asarray(Image.open(tmp_path / "a" / record["mask"])) > 127
        assert np.array_equal(mask, scene.mask)
        audio, rate = soundfile.read(tmp_path / "a" / record["audio"], dtype="float32")
        assert rate == 16000 and np.array_equal(audio, scene.audio)


def test_cli_forced_options(tmp_path):
    assert cli_main(["generate", "--out", str(tmp_path), "--count", "5", "--seed", "20", "--size", "48",
                     "--objects", "2", "--domain", "night", "--quiet"]) == 0
    records = [json.loads(line) for line in (tmp_path / "scenes.jsonl").read_text().splitlines()]
    assert all(r["domain"] == "night" and len(r["objects"]) == 2 and r["size"] == 48 for r in records)
    assert Image.open(tmp_path / records[0]["image"]).size == (48, 48)


def test_splits_are_disjoint():
    assert len(TRAIN_SEEDS) > 0 and len(EVAL_SEEDS) > 0
    assert set(TRAIN_SEEDS[:1]) and max(TRAIN_SEEDS) < min(EVAL_SEEDS)
    assert range(max(TRAIN_SEEDS.start, EVAL_SEEDS.start), min(TRAIN_SEEDS.stop, EVAL_SEEDS.stop)) == range(0)


def test_dataloader_workers_give_the_same_batches():
    from torch.utils.data import DataLoader

    dataset = ShapesWorldDataset(range(100, 116), objects=None, keys=("image", "caption", "shape", "bbox"))
    serial = list(DataLoader(dataset, batch_size=8))
    parallel = list(DataLoader(dataset, batch_size=8, num_workers=2))
    for a, b in zip(serial, parallel):
        assert a["image"].equal(b["image"]) and a["shape"].equal(b["shape"]) and a["bbox"].equal(b["bbox"])
        assert a["caption"] == b["caption"] and len(a["caption"]) == 8
    assert serial[0]["image"].shape == (8, 3, 64, 64)
