"""The `syn` CLI as a user runs it: a subprocess against a real stack, files on disk, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from PIL import Image

from tests.inputs import write_inputs
from tests.servers import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def checkpoints() -> Path:
    return Path(os.environ.get("SYN_CHECKPOINT_DIR", ROOT / "models" / "checkpoints"))


def syn(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synesthesia.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd or ROOT, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_inputs(tmp_path_factory.mktemp("cli-inputs"), 21, 300)


@pytest.fixture(scope="module")
def env(gateway, upstream_targets):
    # The gateway alone: search, index and features reach the embedding and audio services through it.
    return {"SYN_TARGET": gateway.target}


def test_caption_writes_an_attention_sheet_and_json(files, env, tmp_path):
    folder, scene = files
    result = syn("--json", "--out", str(tmp_path), "caption", str(folder / "scene.png"), env=env)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    sounding = scene.objects[0]
    assert sounding.shape in payload["caption"] and payload["words"]
    assert Path(payload["attention_sheet"]).read_bytes().startswith(b"\x89PNG")


def test_imagine_listen_features_run(files, env, tmp_path):
    folder, scene = files
    imagined = syn("--json", "--out", str(tmp_path), "imagine", "a large green circle", "-n", "2", "--seed", "5",
                   env=env)
    if (checkpoints() / "text2image.safetensors").exists():
        assert imagined.returncode == 0, imagined.stderr
        images = json.loads(imagined.stdout)["images"]
        assert len(images) == 2 and all(Path(i["path"]).exists() for i in images)
    else:  # not shipped yet: the documented exit code for NOT_FOUND, naming the model
        assert imagined.returncode == 4 and "text2image" in imagined.stderr, imagined.stderr

    heard = syn("--json", "--out", str(tmp_path), "listen", str(folder / "scene.png"), str(folder / "sound.wav"),
                env=env)
    assert heard.returncode == 0, heard.stderr
    truth = scene.objects[scene.sounding_index]
    summary = json.loads(heard.stdout)["summary"]
    assert truth.colour in summary and truth.shape in summary
    assert Path(json.loads(heard.stdout)["overlay"]).exists()

    feats = syn("--json", "features", str(folder / "sound.wav"), "--kind", "power", "--n-fft", "256", env=env)
    assert feats.returncode == 0, feats.stderr
    assert json.loads(feats.stdout)["shape"][0] == 129

    ran = syn("--json", "run", "docs/examples/pipeline.yaml", "--input", f"scene={folder / 'scene.png'}", env=env)
    events = json.loads(ran.stdout)
    assert {e["step"] for e in events} >= {"look", "night"}
    if all((checkpoints() / f"{m}.safetensors").exists() for m in ("text2image", "day2night")):
        assert ran.returncode == 0, ran.stderr
    else:  # a model the example needs is not shipped yet: NOT_FOUND (exit 4) naming the failed step
        assert ran.returncode == 4 and "pipeline failed at step" in ran.stderr, ran.stderr


def test_index_then_search(files, env):
    folder, _ = files
    indexed = syn("--json", "index", str(folder / "gallery"), "--collection", "cli-test", env=env)
    assert indexed.returncode == 0, indexed.stderr
    assert json.loads(indexed.stdout)["indexed"] == 6
    found = syn("--json", "search", "--image", str(folder / "gallery" / "g2.png"), "--collection", "cli-test",
                "-k", "3", env=env)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["hits"][0]["id"] == "g2.png"
    # --where filters on metadata (indexed files have none, so nothing matches); KEY=VALUE only.
    filtered = syn("--json", "search", "--image", str(folder / "gallery" / "g2.png"), "--collection", "cli-test",
                   "--where", "album=2024", env=env)
    assert filtered.returncode == 0, filtered.stderr
    assert json.loads(filtered.stdout).get("hits", []) == []
    assert syn("search", "a red circle", "--where", "album", env=env).returncode == 2


def test_exit_codes_follow_the_status(files, env):
    folder, _ = files
    bad = syn("caption", str(folder / "junk.png"), env=env)
    # The message names what the user typed (the argument and its file), not the request field.
    assert bad.returncode == 3 and "INVALID_ARGUMENT" in bad.stderr and f"IMAGE {folder / 'junk.png'}" in bad.stderr
    missing = syn("translate", str(folder / "scene.png"), "--model", "nope", env=env)
    assert missing.returncode == 4 and "NOT_FOUND" in missing.stderr
    ok = syn("--json", "health", env=env)
    assert ok.returncode == 0 and {v["status"] for v in json.loads(ok.stdout).values()} == {"SERVING"}
    dead = syn("health", env=env | {"SYN_TARGET": f"127.0.0.1:{free_port()}"})
    assert dead.returncode == 5


def test_version():
    result = syn("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"syn (synesthesia-client) {version('synesthesia-client')}"


def test_json_after_the_command_and_errors_as_json_naming_the_flag(env):
    result = syn("imagine", "a red circle", "-n", "99", "--json", env=env)
    assert result.returncode == 3
    error = json.loads(result.stdout)["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["message"].startswith("-n: ")
    assert "image_count" not in error["message"] and error["field_violations"][0]["flag"] == "-n"
    plain = syn("imagine", "a red circle", "-n", "99", env=env)
    assert plain.returncode == 3 and "-n: " in plain.stderr and "image_count" not in plain.stderr
    usage = syn("caption", "/no/such/file.png", "--json", env=env)
    assert usage.returncode == 2 and json.loads(usage.stdout)["error"]["status"] == "USAGE"


def test_a_service_as_target_gets_a_hint(files, env, upstream_targets):
    folder, _ = files
    result = syn("--target", upstream_targets["captioning"], "caption", str(folder / "scene.png"))
    assert result.returncode == 1 and "UNIMPLEMENTED" in result.stderr
    assert "gateway" in result.stderr.split("hint", 1)[1]


def test_index_skips_undecodable_files_with_one_warning_each(files, env, tmp_path):
    folder, _ = files
    mixed = tmp_path / "mixed"
    shutil.copytree(folder / "gallery", mixed)
    (mixed / "junk.png").write_bytes(b"not an image")
    (mixed / "sub").mkdir()
    (mixed / "sub" / "cut.png").write_bytes((folder / "gallery" / "g0.png").read_bytes()[:60])
    result = syn("index", str(mixed), "--collection", "cli-mixed", "--json", env=env)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["indexed"] == 6 and payload["collection_size"] == 6
    assert sorted(s["path"] for s in payload["skipped"]) == [str(mixed / "junk.png"), str(mixed / "sub" / "cut.png")]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: skipped ")]
    assert len(warnings) == 2 and any(str(mixed / "junk.png") in w for w in warnings)
    plain = syn("index", str(mixed), "--collection", "cli-mixed", env=env)
    assert plain.returncode == 0 and "indexed 6 images into cli-mixed (6 items); skipped 2 files" in plain.stdout

    deleted = syn("--json", "delete", "g2.png", "g3.png", "nope.png", "--collection", "cli-mixed", env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout) == {"collection": "cli-mixed", "deleted": 2, "collection_size": 4}
    found = syn("--json", "search", "--image", str(mixed / "g2.png"), "--collection", "cli-mixed", env=env)
    assert "g2.png" not in {h["id"] for h in json.loads(found.stdout)["hits"]}

    listed = syn("collections", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert {"collection": "cli-mixed", "size": 4} == {k: v for k, v in next(
        c for c in json.loads(listed.stdout) if c["collection"] == "cli-mixed").items() if k in ("collection", "size")}
    assert "cli-mixed" in syn("collections", env=env).stdout
    dropped = syn("delete", "--all", "--collection", "cli-mixed", env=env)
    assert dropped.returncode == 0 and "dropped cli-mixed (4 items)" in dropped.stdout, dropped.stderr
    assert "cli-mixed" not in {c["collection"] for c in json.loads(syn("--json", "collections", env=env).stdout)}


def test_run_writes_every_image_output_and_prints_its_path(files, env, tmp_path):
    folder, _ = files
    if not all((checkpoints() / f"{m}.safetensors").exists() for m in ("text2image", "day2night")):
        pytest.skip("the example pipeline needs the text2image and day2night checkpoints")
    out = tmp_path / "run"
    result = syn("--out", str(out), "run", "docs/examples/pipeline.yaml", "--input", f"scene={folder / 'scene.png'}",
                 env=env)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.split()
    assert sorted(printed) == sorted(str(p) for p in out.iterdir()) and len(printed) == 2
    assert all(Image.open(p).size == (64, 64) for p in printed)
    as_json = syn("--json", "--out", str(out), "run", "docs/examples/pipeline.yaml", "--input",
                  f"scene={folder / 'scene.png'}", env=env)
    night = next(e for e in json.loads(as_json.stdout) if e["step"] == "night" and e["state"] == "finished")
    assert night["output"]["image"] == {"path": str(out / "night.image.png")} and night["files"]


def test_models_listen_overlay_and_uncut_paths(files, env, tmp_path):
    folder, _ = files
    models = syn("models", "--json", env=env)
    assert models.returncode == 0, models.stderr
    rows = json.loads(models.stdout)
    assert {"captioning", "generation", "audio", "embedding"} <= {r["service"] for r in rows}
    assert sum(r["default"] for r in rows if r["service"] == "captioning") == 1
    assert all(r["family"] == "builtin" and r["backend"] == "builtin" and r["source"].endswith(".safetensors")
               for r in rows)

    heard = syn("--json", "--out", str(tmp_path), "listen", str(folder / "scene.png"), str(folder / "sound.wav"),
                env=env)
    assert min(Image.open(json.loads(heard.stdout)["overlay"]).size) >= 512  # readable, not a 64 px thumbnail

    if (checkpoints() / "text2image.safetensors").exists():
        deep = tmp_path / "a" / "rather" / "deep" / "folder" / "for" / "the" / "pictures"
        table = syn("--out", str(deep), "imagine", "a small blue square", "-n", "1", "--seed", "0",
                    env=env | {"COLUMNS": "40"})
        assert table.returncode == 0, table.stderr
        written = next(deep.iterdir())
        assert str(written) in table.stdout  # whole, on one line, however narrow the terminal


def test_translate_shows_the_services_warnings(files, env, tmp_path):
    """A scene where sketch2photo expects a sketch: translated, with the built-in's note in the JSON and,
    for people, on stderr."""
    if not (checkpoints() / "sketch2photo.safetensors").exists():
        pytest.skip("sketch2photo is not shipped")
    folder, _ = files
    result = syn("--json", "--out", str(tmp_path), "translate", str(folder / "scene.png"), "--model", "sketch2photo",
                 env=env)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["model"] == "sketch2photo" and Path(payload["path"]).exists()
    assert payload["warnings"] and "'sketch2photo'" in payload["warnings"][0]
    result = syn("--out", str(tmp_path), "translate", str(folder / "scene.png"), "--model", "sketch2photo", env=env)
    assert result.returncode == 0 and "warning:" in result.stderr and "a ShapesWorld sketch" in result.stderr
