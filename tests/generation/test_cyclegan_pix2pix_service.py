"""Reference pix2pix / CycleGAN `.pth` generators served by a real Generation server from a model
repository, beside a built-in; through the gateway's Translate and the `syn` CLI.

The generators are the reference layouts of tests/generation/reference_pix2pix.py (tiny widths,
random weights), saved as the reference saves them; every served picture is compared with that
reference network's own forward pass on the same input, to the PNG's rounding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import torch

from models.training import CHECKPOINT_DIR
from synesthesia.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from tests.conftest import ROOT, gateway_env
from tests.generation.helpers import SERVICE, decode_png, image_to_image, list_models, png
from tests.generation.reference_pix2pix import (
    define_g,
    random_picture,
    reference_output,
    reflect_padded_reference,
    save,
    write_entry,
)
from tests.runtime.helpers import field_violations

ROUNDING = 0.5 + 1e-3  # served uint8 vs the reference's float grey levels
LIMIT = 300_000  # SYN_GENERATION_MAX_TRANSLATE_PIXELS for these servers: four 256 x 256 U-Net passes
HAS_DAY2NIGHT = (CHECKPOINT_DIR / "day2night.safetensors").exists()


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """The repository: a CycleGAN G_A (resnet_9blocks, instance norm), a pix2pix G (unet_256, BatchNorm,
    dropout, the default) and, when shipped, the built-in day2night beside them."""
    repository = tmp_path_factory.mktemp("repository")
    horse = define_g("resnet_9blocks", 4, "instance", seed=1)
    facades = define_g("unet_256", 2, "batch", True, seed=2)
    write_entry(repository, "horse2zebra", save(horse, repository / "horse2zebra" / "latest_net_G_A.pth"),
                netG="resnet_9blocks")
    entry = write_entry(repository, "facades", save(facades, repository / "facades" / "latest_net_G.pth"))
    entry.write_text(entry.read_text() + "default: true\n")
    if HAS_DAY2NIGHT:
        (repository / "day2night.model.yaml").write_text(
            f"task: image-to-image\nfamily: builtin\npath: {CHECKPOINT_DIR / 'day2night.safetensors'}\n")
    return repository, {"horse2zebra": horse, "facades": facades}


@pytest.fixture(scope="module")
def server(shared_service, networks):
    repository, _ = networks
    return shared_service(SERVICE, {"SYN_MODEL_REPOSITORY": str(repository),
                                    "SYN_GENERATION_MAX_TRANSLATE_PIXELS": str(LIMIT)})


def served(server, pixels: np.ndarray, model: str) -> np.ndarray:
    reply = image_to_image(server.target, png(pixels), model)
    assert reply.model == (model or "facades")
    return decode_png(reply.image.data)


def test_list_models_shows_family_source_and_parameters(server, networks):
    repository, nets = networks
    models = {m.name: m for m in list_models(server.target)}
    assert set(models) == {"horse2zebra", "facades"} | ({"day2night"} if HAS_DAY2NIGHT else set())
    horse, facades = models["horse2zebra"], models["facades"]
    for info, name, file in ((horse, "horse2zebra", "latest_net_G_A.pth"), (facades, "facades", "latest_net_G.pth")):
        assert info.task == "image-to-image" and info.family == "cyclegan-pix2pix"
        assert info.backend == common_pb2.MODEL_BACKEND_PYTORCH_CHECKPOINT
        assert info.source == str(repository / name / file) and len(info.weights_sha256) == 64
        assert info.parameter_count == sum(p.numel() for p in nets[name].parameters())
    assert horse.architecture == "resnet_9blocks (ngf 4, instance norm, 3->3 channels)"
    assert facades.architecture == "unet_256 (ngf 2, batch norm, 3->3 channels)"
    assert facades.is_default and not horse.is_default
    if HAS_DAY2NIGHT:
        assert models["day2night"].backend == common_pb2.MODEL_BACKEND_BUILTIN


@pytest.mark.parametrize("model, height, width", [("horse2zebra", 64, 48), ("facades", 256, 256), ("", 256, 256)])
def test_the_served_picture_is_the_reference_forward_pass(server, networks, model, height, width):
    pixels = random_picture(height, width, seed=5)
    expected = reference_output(networks[1][model or "facades"], pixels)
    assert np.abs(served(server, pixels, model) - expected).max() <= ROUNDING


@pytest.mark.parametrize("model, multiple, minimum", [("horse2zebra", 4, 8), ("facades", 256, 256)])
@pytest.mark.parametrize("height, width", [(37, 53), (1, 1), (130, 257)])
def test_any_size_comes_back_at_its_size(server, networks, model, multiple, minimum, height, width):
    pixels = random_picture(height, width, seed=6)
    out = served(server, pixels, model)
    assert out.shape == (height, width, 3)
    expected = reflect_padded_reference(networks[1][model], pixels, multiple, minimum)
    assert np.abs(out - expected).max() <= ROUNDING


def test_outputs_are_deterministic_whatever_shares_the_batch(server):
    # Eight concurrent calls of mixed sizes share batches (and are split under the pixel limit);
    # each answer must be the bytes the same picture gets alone.
    pictures = [png(random_picture(h, w, seed)) for seed, (h, w) in enumerate([(256, 256), (100, 70), (256, 256),
                                                                               (33, 200), (256, 256), (256, 256),
                                                                               (60, 60), (256, 256)])]
    alone = [image_to_image(server.target, p, "facades").image.data for p in pictures]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda p: image_to_image(server.target, p, "facades").image.data, pictures))
    assert together == alone
    assert [image_to_image(server.target, p, "facades").image.data for p in pictures[:2]] == alone[:2]


def test_an_image_over_the_pixel_limit_is_refused_naming_the_setting(server):
    # 300 x 600 runs through unet_256 at 512 x 768 = 393,216 pixels > LIMIT; the ResNet needs 300 x 600.
    with pytest.raises(grpc.RpcError) as err:
        image_to_image(server.target, png(random_picture(300, 600)), "facades")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert [f for f, _ in field_violations(err.value)] == ["image.data"]
    assert "SYN_GENERATION_MAX_TRANSLATE_PIXELS" in err.value.details() and "512x768" not in err.value.details()
    assert "768x512" in err.value.details()
    assert decode_png(image_to_image(server.target, png(random_picture(300, 600)), "horse2zebra").image.data).shape \
        == (300, 600, 3)


def broken_file(kind: str, path):
    net = define_g("resnet_6blocks", 2, "instance")
    state = net.state_dict()
    if kind == "missing":
        del state["model.10.conv_block.5.bias"]
    elif kind == "shape":
        state["model.1.bias"] = torch.zeros(5)
    else:
        state = net  # a pickled module where a state_dict of tensors is expected
    torch.save(state, path)
    return path


@pytest.mark.parametrize("kind, message", [
    ("missing", "missing weights: model.10.conv_block.5.bias"),
    ("shape", "mis-shaped weights: model.1.bias (5,) (expected (2,))"),
    ("pickled", "holds a pickled object, not only tensors, and is not unpickled"),
])
def test_a_file_that_does_not_fit_stops_start_up_naming_the_model_and_keys(service_process, tmp_path, kind, message):
    repository = tmp_path / "repository"
    write_entry(repository, "broken", broken_file(kind, tmp_path / "latest_net_G.pth"))
    with pytest.raises(RuntimeError) as caught:
        service_process(SERVICE, env={"SYN_MODEL_REPOSITORY": str(repository)})
    assert "exited with 1" in str(caught.value)
    assert "model 'broken'" in str(caught.value) and message in str(caught.value)


@pytest.mark.slow
def test_translate_through_the_gateway_and_the_cli(service_process, upstream_targets, server, networks, tmp_path):
    gateway = service_process("gateway", gateway_env(dict(upstream_targets, generation=server.target)))
    pixels = random_picture(64, 48, seed=9)
    expected = reference_output(networks[1]["horse2zebra"], pixels)
    with grpc.insecure_channel(gateway.target) as channel:
        reply = gateway_pb2_grpc.GatewayStub(channel).Translate(
            gateway_pb2.TranslateRequest(image=common_pb2.Image(data=png(pixels)), model="horse2zebra"), timeout=60)
    assert np.abs(decode_png(reply.image.data) - expected).max() <= ROUNDING
    # The built-in captioner describes the result (and may note that it is no ShapesWorld scene); no step failed.
    assert reply.caption and not [w for w in reply.warnings if " failed (" in w], reply.warnings

    def syn(*args):
        result = subprocess.run([sys.executable, "-m", "synesthesia.cli", "--json", "--out", str(tmp_path), *args],
                                capture_output=True, text=True, cwd=ROOT, timeout=300,
                                env={**os.environ, "SYN_TARGET": gateway.target})
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    rows = {r["name"]: r for r in syn("models") if r["service"] == "generation"}
    assert rows["horse2zebra"]["family"] == "cyclegan-pix2pix"
    assert rows["horse2zebra"]["backend"] == "pytorch_checkpoint"
    assert rows["horse2zebra"]["parameters"] == sum(p.numel() for p in networks[1]["horse2zebra"].parameters())
    assert rows["horse2zebra"]["source"].endswith("horse2zebra/latest_net_G_A.pth")
    (tmp_path / "horse.png").write_bytes(png(pixels))
    translated = syn("translate", str(tmp_path / "horse.png"), "--model", "horse2zebra")
    assert translated["path"] == str(tmp_path / "horse_horse2zebra.png")
    assert np.abs(decode_png(open(translated["path"], "rb").read()) - expected).max() <= ROUNDING
