"""Model choice end to end: the gateway's `model` fields and the CLI's `--model`, and Listen's answer
built from the localiser's box and the chosen captioner's own words (no ShapesWorld grammar).

The captioning service here serves the built-in (default) and a tiny random ViT + GPT-2 from
a model repository; the gateway sits in front of it and the shared generation, audio and
embedding services.
"""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from models.shapesworld import EVAL_SEEDS, render_scene
from models.training import CHECKPOINT_DIR
from synesthesia.pictures import png_bytes
from synesthesia.tensors import array_to_pcm
from synesthesia.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests import tiny_hf
from tests.cli.test_cli import syn
from tests.conftest import gateway_env
from tests.gateway.test_gateway_e2e import wav
from tests.servers import ServiceProcess

pytestmark = pytest.mark.slow
SCENE = render_scene(EVAL_SEEDS[77], objects=2, domain="day")


@pytest.fixture(scope="module")
def gateway(upstream_targets, tmp_path_factory):
    root = tmp_path_factory.mktemp("repository")
    tiny_hf.entry(root, "tiny-vit", "captioning", tiny_hf.vision_encoder_decoder(root / "weights", "vit"))
    tiny_hf.entry(root, "captioning", "captioning", CHECKPOINT_DIR / "captioning.safetensors", family="builtin",
                  default=True)
    logs = tmp_path_factory.mktemp("logs")
    captioning = ServiceProcess("services.captioning", {"SYN_MODEL_REPOSITORY": str(root)}, logs).start(400)
    front = ServiceProcess("services.gateway", gateway_env({**upstream_targets, "captioning": captioning.target}),
                           logs).start()
    yield front
    front.stop()
    captioning.stop()


@pytest.fixture(scope="module")
def stub(gateway):
    with grpc.insecure_channel(gateway.target) as channel:
        yield gateway_pb2_grpc.GatewayStub(channel)


def image() -> common_pb2.Image:
    return common_pb2.Image(data=png_bytes(SCENE.image))


def test_describe_uses_the_chosen_captioner(stub):
    assert stub.Describe(gateway_pb2.DescribeRequest(image=image()), timeout=60).caption.model == "captioning"
    chosen = stub.Describe(gateway_pb2.DescribeRequest(image=image(), model="tiny-vit"), timeout=60).caption
    assert chosen.model == "tiny-vit" and chosen.words
    with pytest.raises(grpc.RpcError) as caught:
        stub.Describe(gateway_pb2.DescribeRequest(image=image(), model="no-such-model"), timeout=60)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and "captioning" in caught.value.details()


def test_imagine_and_translate_take_their_models_and_captioner(stub):
    imagined = stub.Imagine(gateway_pb2.ImagineRequest(prompt="a large red circle", image_count=2, seed=3,
                                                       model="text2image", captioning_model="tiny-vit"), timeout=120)
    assert imagined.model == "text2image" and len(imagined.images) == 2
    builtin = stub.Imagine(gateway_pb2.ImagineRequest(prompt="a large red circle", image_count=2, seed=3),
                           timeout=120)
    assert [i.image.data for i in imagined.images] == [i.image.data for i in builtin.images]
    assert [i.caption for i in imagined.images] != [i.caption for i in builtin.images]  # another captioner's words
    translated = stub.Translate(gateway_pb2.TranslateRequest(image=image(), model="day2night",
                                                             captioning_model="tiny-vit"), timeout=120)
    assert translated.image.data.startswith(b"\x89PNG")
    with pytest.raises(grpc.RpcError) as caught:
        stub.Imagine(gateway_pb2.ImagineRequest(prompt="a red circle", model="sketch2photo"), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_listen_quotes_the_chosen_captioner_and_says_when_there_is_no_clear_source(stub):
    sound = common_pb2.AudioClip(encoded=wav(SCENE.audio))
    heard = stub.Listen(gateway_pb2.ListenRequest(image=image(), audio=sound, model="localization",
                                                  captioning_model="tiny-vit"), timeout=60)
    assert heard.clear_source and heard.caption and heard.caption in heard.summary
    builtin = stub.Listen(gateway_pb2.ListenRequest(image=image(), audio=sound), timeout=60)
    truth = SCENE.objects[SCENE.sounding_index]
    assert builtin.clear_source and truth.colour in builtin.caption and builtin.caption in builtin.summary
    for name, samples in (("silence", np.zeros(16000, np.float32)),
                          ("noise", np.random.default_rng(0).normal(0, 0.3, 16000).astype(np.float32))):
        clip = common_pb2.AudioClip(pcm=common_pb2.Pcm(samples_f32le=array_to_pcm(samples), sample_rate_hz=16000))
        reply = stub.Listen(gateway_pb2.ListenRequest(image=image(), audio=clip), timeout=60)
        assert not reply.clear_source and reply.caption == "" and "no clear source" in reply.summary, name


def test_the_cli_passes_model_choices(gateway, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "scene.png").write_bytes(png_bytes(SCENE.image))
    env = {"SYN_TARGET": gateway.target}
    result = syn("--json", "--out", str(tmp_path), "caption", str(folder / "scene.png"), "--model", "tiny-vit",
                 env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "tiny-vit"
    result = syn("--json", "--out", str(tmp_path), "imagine", "a small blue square", "--model", "text2image",
                 "--captioning-model", "tiny-vit", "--seed", "5", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "text2image"
    result = syn("--json", "--out", str(tmp_path), "index", str(folder), "--collection", "chosen", "--model",
                 "embedding", env=env)
    assert result.returncode == 0, result.stderr
    result = syn("--json", "search", "a dog on the beach", "--collection", "chosen", env=env)
    assert result.returncode == 0, result.stderr
    assert {"dog", "beach"} <= set(json.loads(result.stdout)["unknown_words"])
    result = syn("--json", "search", "a red circle", "--collection", "chosen", "--model", "someone-else", env=env)
    assert result.returncode != 0 and "FAILED_PRECONDITION" in result.stdout + result.stderr
    result = syn("caption", str(folder / "scene.png"), "--model", "no-such-model", env=env)
    assert result.returncode != 0 and "no-such-model" in result.stdout + result.stderr
