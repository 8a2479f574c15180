"""Explanations through the gateway (Gateway.Explain routes to the owning service) and `syn explain`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile
from PIL import Image

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.pictures import png_bytes
from synesthesia.v1 import common_pb2, explain_pb2, gateway_pb2_grpc
from tests.explain.conftest import violations

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
E = explain_pb2


def syn(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synesthesia.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def stub(gateway):
    channel = grpc.insecure_channel(gateway.target)
    yield gateway_pb2_grpc.GatewayStub(channel)
    channel.close()


def test_explain_routes_each_target_and_relays_errors(stub):
    scene = render_scene(EVAL_SEEDS.start + 900_031, objects=1)
    image = common_pb2.Image(data=png_bytes(scene.image))
    judged = stub.Explain(E.ExplainRequest(judge=E.ExplainJudgeRequest(
        image=image, methods=[E.EXPLAIN_METHOD_CAM])), timeout=120)
    assert judged.WhichOneof("result") == "judge" and judged.judge.class_name == scene.objects[0].shape
    matched = stub.Explain(E.ExplainRequest(match=E.ExplainMatchRequest(
        image=image, text=scene.captions[0], methods=[E.EXPLAIN_METHOD_GRAD_CAM])), timeout=120)
    assert matched.WhichOneof("result") == "match" and len(matched.match.explanations) == 1
    with pytest.raises(grpc.RpcError) as caught:
        stub.Explain(E.ExplainRequest(), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "target" in violations(caught.value)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Explain(E.ExplainRequest(caption=E.ExplainCaptionRequest(image=image)), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "methods" in caught.value.details()


def test_syn_explain_writes_pictures(gateway, upstream_targets, tmp_path):
    scene = render_scene(EVAL_SEEDS.start + 900_032, objects=2, domain="day")
    (tmp_path / "scene.png").write_bytes(png_bytes(scene.image))
    buffer = io.BytesIO()
    soundfile.write(buffer, scene.audio, 16000, format="WAV")
    (tmp_path / "sound.wav").write_bytes(buffer.getvalue())
    env = {"SYN_TARGET": gateway.target}
    out = tmp_path / "out"
    commands = {
        "caption": ["caption", str(tmp_path / "scene.png"), "--word", "3", "--caption", scene.captions[0],
                    "--method", "grad_cam",
                    "--method", "attention"],
        "judge": ["judge", str(tmp_path / "scene.png"), "--head", "colour", "--method", "cam"],
        "sound": ["sound", str(tmp_path / "scene.png"), str(tmp_path / "sound.wav"), "--method", "occlusion",
                  "--stride", "8"],
    }
    for name, args in commands.items():
        result = syn("--json", "--out", str(out), "explain", *args, env=env)
        assert result.returncode == 0, (name, result.stderr)
        payload = json.loads(result.stdout)
        for path in payload["pictures"] + [payload["sheet"]]:
            picture = np.asarray(Image.open(path))
            assert picture.ndim == 3 and picture.shape[2] == 3
    caption = json.loads(syn("--json", "--out", str(out), "explain", *commands["caption"], env=env).stdout)
    assert f"'{scene.captions[0].split()[3]}'" in caption["title"]
    filters = syn("--json", "--out", str(out), "explain", "judge-filters", env=env)
    assert filters.returncode == 0, filters.stderr
    assert Path(json.loads(filters.stdout)["picture"]).read_bytes().startswith(b"\x89PNG")
    bad = syn("--out", str(out), "explain", "judge", str(tmp_path / "scene.png"), "--head", "texture", env=env)
    assert bad.returncode != 0 and "head" in bad.stderr + bad.stdout
