"""EZ-VSL's best.pth served by the real Audio service (family `ezvsl`, models/audio/ezvsl.py).

A random EZ-VSL, built and saved by tests/audio/ezvsl_reference.py as the reference code does
(DataParallel keys, optimizer state, numpy float64 metrics), is served from a model repository
beside the built-in localiser; the served maps must equal the reference's own computation on the
same inputs at any image size. Strict loading: a missing or mis-shaped weight, an extra one, or a
pickled object outside the numpy-scalar allow-list stops the load naming the model and the keys.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import os
import re
from pathlib import Path

import grpc
import numpy as np
import pytest
import soundfile
import torch
from synesthesia.pictures import png_bytes
from synesthesia.tensors import array_to_pcm, from_tensor
from synesthesia.v1 import audio_pb2, audio_pb2_grpc, common_pb2, gateway_pb2, gateway_pb2_grpc

from models import families
from models.audio import ezvsl
from models.audio.localize import box_of, peak_region
from models.hf import LoadError
from models.repository import ModelEntry, RepositoryError
from models.training import CHECKPOINT_DIR
from tests import tiny_hf
from tests.audio import ezvsl_reference as reference
from tests.cli.test_cli import syn
from tests.conftest import gateway_env
from tests.servers import ServiceProcess

RATE = 16000


def entry(path, name: str = "ezvsl") -> ModelEntry:
    return ModelEntry(name, "sound-localization", "ezvsl", path, origin="test")


@pytest.fixture(scope="module")
def model():
    return reference.random_model(seed=0)


@pytest.fixture(scope="module")
def best(model, tmp_path_factory):
    return reference.save_best(model, tmp_path_factory.mktemp("ezvsl") / "best.pth")


@pytest.fixture(scope="module")
def repository(best, tmp_path_factory):
    root = tmp_path_factory.mktemp("repository")
    tiny_hf.entry(root, "ezvsl", "sound-localization", best, family="ezvsl")
    tiny_hf.entry(root, "localization", "sound-localization", CHECKPOINT_DIR / "localization.safetensors",
                  family="builtin", default=True)
    return root


@pytest.fixture(scope="module")
def audio(shared_service, repository):
    return shared_service("audio", {"SYN_MODEL_REPOSITORY": str(repository)})


@pytest.fixture(scope="module")
def stub(audio):
    with grpc.insecure_channel(audio.target) as channel:
        yield audio_pb2_grpc.AudioStub(channel)


def pairs(count: int, seed: int = 1):
    """Pictures of assorted sizes and aspect ratios, clips shorter, equal to and longer than 3 s."""
    rng = np.random.default_rng(seed)
    sizes = [(224, 224), (100, 333), (480, 640), (13, 7), (2, 50), (300, 90)]
    lengths = [48000, 20000, 70001, 600, 123457, 47999]
    out = []
    for i in range(count):
        height, width = sizes[i % len(sizes)]
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        t = np.arange(lengths[i % len(lengths)]) / RATE
        clip = (0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        out.append((image, clip))
    return out


def localize_request(image, clip, model: str = "ezvsl", rate: int = RATE) -> audio_pb2.LocalizeRequest:
    return audio_pb2.LocalizeRequest(
        image=common_pb2.Image(data=png_bytes(image)), model=model,
        audio=common_pb2.AudioClip(pcm=common_pb2.Pcm(samples_f32le=array_to_pcm(clip), sample_rate_hz=rate)))


# --- the front end and the map, in process --------------------------------------------------


@pytest.mark.parametrize("length", [600, 47999, 48000, 48001, 70001, 160000])
def test_spectrogram_equals_the_reference(length):
    clip = np.random.default_rng(length).uniform(-1.5, 1.5, length).astype(np.float32)  # some beyond full scale
    ours = ezvsl.spectrogram_input(clip, RATE)
    theirs = reference.spectrogram_tensor(clip, RATE).float()
    assert ours.shape == theirs.shape == (1, 257, 200)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_image_input_equals_the_reference():
    image = np.random.default_rng(0).integers(0, 256, (97, 310, 3), dtype=np.uint8)
    torch.testing.assert_close(ezvsl.image_input(image), reference.image_tensor(image), rtol=0, atol=1e-5)


def test_loaded_model_gives_the_reference_maps_in_one_batch(model, best):
    localizer = families.load(entry(best), "cpu")
    chosen = pairs(6)
    found = localizer.localize([image for image, _ in chosen], [clip for _, clip in chosen])
    for (image, clip), result in zip(chosen, found):
        expected = reference.reference_heatmap(model, image, clip)
        assert result.heatmap.shape == image.shape[:2]
        np.testing.assert_allclose(result.heatmap, expected, rtol=0, atol=1e-4)
    assert localizer.details.family == "ezvsl" and localizer.details.backend == "pytorch-checkpoint"
    assert localizer.details.metrics == {"best_cIoU": 0.75, "best_Auc": 0.625, "epoch": 12.0}
    assert localizer.details.parameter_count == sum(p.numel() for p in model.parameters())


def test_the_projection_size_is_read_from_the_tensors(tmp_path):
    # train.py's --out_dim: 512 in every release, any D loads.
    narrow = reference.random_model(seed=3, dim=64)
    localizer = families.load(entry(reference.save_best(narrow, tmp_path / "best.pth")), "cpu")
    (image, clip), = pairs(1, seed=6)
    np.testing.assert_allclose(localizer.localize([image], [clip])[0].heatmap,
                               reference.reference_heatmap(narrow, image, clip), rtol=0, atol=1e-4)
    assert "64-d" in localizer.details.architecture


@pytest.mark.slow
def test_object_guided_map_equals_test_py(model, best, tmp_path):
    # test.py's EZ-VSL + OGL: ImageNet ResNet-18 weights beside best.pth, alpha 0.4 by default.
    imagenet = reference.save_imagenet_resnet18(tmp_path / "resnet18-f37072fd.pth")
    saliency = reference.object_saliency_model(imagenet)
    for alpha in (None, 0.7):
        options = {"object_saliency": str(imagenet), **({} if alpha is None else {"alpha": alpha})}
        localizer = families.load(ModelEntry("ezvsl-ogl", "sound-localization", "ezvsl", best, options=options,
                                             origin="test"), "cpu")
        chosen = pairs(3, seed=7)
        found = localizer.localize([image for image, _ in chosen], [clip for _, clip in chosen])
        for (image, clip), result in zip(chosen, found):
            expected = reference.reference_heatmap(model, image, clip, saliency, 0.4 if alpha is None else alpha)
            np.testing.assert_allclose(result.heatmap, expected, rtol=0, atol=1e-4)
            assert not np.allclose(expected, reference.reference_heatmap(model, image, clip), atol=1e-2)
        assert f"object saliency (alpha {0.4 if alpha is None else alpha:g})" in localizer.details.architecture
    broken = tmp_path / "no-fc.pth"
    torch.save({k: v for k, v in torch.load(imagenet).items() if not k.startswith("fc.")}, broken)
    with pytest.raises(LoadError, match=r"'ezvsl-ogl'.*no-fc.pth.*missing weights: fc.bias, fc.weight"):
        families.load(ModelEntry("ezvsl-ogl", "sound-localization", "ezvsl", best,
                                 options={"object_saliency": str(broken)}, origin="test"), "cpu")


# --- strict loading -------------------------------------------------------------------------


def resaved(best, tmp_path, change) -> os.PathLike:
    """best.pth loaded by the test (it trusts its own file), changed, saved again."""
    checkpoint = torch.load(best, weights_only=False)
    change(checkpoint)
    path = tmp_path / "changed.pth"
    torch.save(checkpoint, path)
    return path


def load_error(path) -> str:
    with pytest.raises(LoadError) as caught:
        families.load(entry(path, "broken-ezvsl"), "cpu")
    return str(caught.value)


def test_a_missing_weight_is_named(best, tmp_path):
    message = load_error(resaved(best, tmp_path, lambda c: c["model"].pop("module.aud_proj.bias")))
    assert "'broken-ezvsl'" in message and "missing weights: aud_proj.bias" in message


def test_a_mis_shaped_weight_is_named(best, tmp_path):
    # An audio network whose first convolution takes RGB, as an ImageNet ResNet-18's does.
    def rgb_conv1(checkpoint):
        checkpoint["model"]["module.audnet.conv1.weight"] = torch.zeros(64, 3, 7, 7)

    message = load_error(resaved(best, tmp_path, rgb_conv1))
    assert "'broken-ezvsl'" in message and "mis-shaped weights: audnet.conv1.weight (64, 3, 7, 7)" in message


def test_an_unexpected_weight_is_named(best, tmp_path):
    def with_fc(checkpoint):
        checkpoint["model"]["module.imgnet.fc.weight"] = torch.zeros(1000, 512)

    message = load_error(resaved(best, tmp_path, with_fc))
    assert "'broken-ezvsl'" in message and "unexpected weights: imgnet.fc.weight" in message


def test_a_pickled_function_is_refused(best, tmp_path):
    # A global function; the allow-list holds numpy's float64 scalars and nothing else.
    message = load_error(resaved(best, tmp_path, lambda c: c.update(hook=os.getcwd)))
    assert "'broken-ezvsl'" in message and "posix.getcwd" in message


def test_numpy_beyond_float64_scalars_is_refused(best, tmp_path):
    # A whole array of per-epoch metrics needs numpy's array reconstructor: not on the allow-list.
    message = load_error(resaved(best, tmp_path, lambda c: c.update(history=np.array([0.1, 0.2]))))
    assert "'broken-ezvsl'" in message and "_reconstruct" in message


def test_metrics_pickled_by_numpy_1_load(best, model, tmp_path):
    # Files written before numpy 2 name the scalar constructor numpy.core.multiarray.scalar. The
    # legacy (non-zip) format is a plain pickle stream, so the name can be rewritten in place.
    legacy = tmp_path / "legacy.pth"
    torch.save(torch.load(best, weights_only=False), legacy, _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    assert data.count(b"cnumpy._core.multiarray\nscalar") == 1  # pickle memoises the global
    legacy.write_bytes(data.replace(b"cnumpy._core.multiarray\nscalar", b"cnumpy.core.multiarray\nscalar"))
    localizer = families.load(entry(legacy), "cpu")
    assert localizer.details.metrics["best_cIoU"] == 0.75


def test_bad_options_are_named(best):
    for options, named in (({"sample_rate_hz": "fast"}, "options.sample_rate_hz is 'fast'"),
                           ({"clip_seconds": 0.01}, "at least 512 samples"),
                           ({"object_saliency": "x.pth", "alpha": 2}, "options.alpha is 2.0")):
        with pytest.raises(RepositoryError, match=f"'ezvsl'.*{re.escape(named)}"):
            families.load(ModelEntry("ezvsl", "sound-localization", "ezvsl", best, options=options, origin="e"),
                          "cpu")


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "best.pth"
    junk.write_bytes(b"not a zip file at all")
    assert "is not a readable PyTorch file" in load_error(junk)
    torch.save({"netG": {}}, junk)
    assert "has no 'model' in the file" in load_error(junk)


@pytest.mark.slow
def test_a_bad_checkpoint_stops_the_service_at_start_up(best, tmp_path):
    broken = resaved(best, tmp_path, lambda c: c["model"].pop("module.imgnet.layer4.1.bn2.running_var"))
    root = tmp_path / "repository"
    tiny_hf.entry(root, "field-recorder", "sound-localization", broken, family="ezvsl")
    service = ServiceProcess("services.audio", {"SYN_MODEL_REPOSITORY": str(root)}, tmp_path).start(wait=False)
    try:
        assert service.process.wait(300) != 0
    finally:
        service.kill()
    log = service.log_tail(80)
    assert "'field-recorder'" in log and "imgnet.layer4.1.bn2.running_var" in log, log


# --- the real service -----------------------------------------------------------------------


def test_served_maps_equal_the_reference_at_any_size(stub, model):
    chosen = pairs(6, seed=2)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:  # concurrent: the batcher groups them
        responses = list(pool.map(lambda p: stub.Localize(localize_request(*p), timeout=120), chosen))
    for (image, clip), response in zip(chosen, responses):
        expected = reference.reference_heatmap(model, image, clip)
        served = from_tensor(response.heatmap.values)
        assert response.model == "ezvsl" and not response.warnings
        assert (response.heatmap.image_height_px, response.heatmap.image_width_px) == image.shape[:2]
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-4)
        assert served.min() == 0.0 and served.max() == 1.0
        box = response.box
        region, _ = peak_region(served)
        assert (box.x_min_px, box.y_min_px, box.x_max_px, box.y_max_px) == box_of(region)
        assert response.peak_to_mean_ratio == pytest.approx(1.0 / served.mean(), rel=1e-4)
        assert response.clear_source == (response.peak_to_mean_ratio >= 3.0)
        assert -1.0 <= response.peak_score <= 1.0


def test_clips_at_other_rates_and_encoded_are_resampled(stub):
    image, clip = pairs(1, seed=3)[0]
    wav = io.BytesIO()
    soundfile.write(wav, np.repeat(clip, 3), 48000, format="WAV", subtype="FLOAT")
    encoded = stub.Localize(audio_pb2.LocalizeRequest(
        image=common_pb2.Image(data=png_bytes(image)), model="ezvsl",
        audio=common_pb2.AudioClip(encoded=wav.getvalue())), timeout=120)
    pcm = stub.Localize(localize_request(image, np.repeat(clip, 3), rate=48000), timeout=120)
    assert encoded.model == pcm.model == "ezvsl"
    np.testing.assert_allclose(from_tensor(encoded.heatmap.values), from_tensor(pcm.heatmap.values), atol=1e-5)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Localize(localize_request(image, clip[:100]), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at least 512" in caught.value.details()


def test_list_models_shows_both_localisers(stub, best):
    listed = {m.name: m for m in stub.ListModels(audio_pb2.ListAudioModelsRequest(), timeout=30).models}
    assert set(listed) == {"ezvsl", "localization"}
    info = listed["ezvsl"]
    assert info.task == "sound-localization" and info.family == "ezvsl" and not info.is_default
    assert info.backend == common_pb2.MODEL_BACKEND_PYTORCH_CHECKPOINT and info.source == str(best)
    assert info.weights_sha256 == hashlib.sha256(best.read_bytes()).hexdigest()
    assert dict(info.metrics) == {"best_cIoU": 0.75, "best_Auc": 0.625, "epoch": 12.0}
    assert info.parameter_count > 20_000_000 and "EZ-VSL" in info.architecture
    assert listed["localization"].is_default and listed["localization"].backend == common_pb2.MODEL_BACKEND_BUILTIN


# --- through the gateway and the CLI ----------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(upstream_targets, audio, tmp_path_factory):
    """A gateway whose audio upstream serves EZ-VSL beside the built-in (the other upstreams shared)."""
    front = ServiceProcess("services.gateway", gateway_env({**upstream_targets, "audio": audio.target}),
                           tmp_path_factory.mktemp("gateway")).start()
    yield front
    front.stop()


@pytest.mark.slow
def test_listen_through_the_gateway_with_model(gateway, model):
    image, clip = pairs(1, seed=4)[0]
    pcm = common_pb2.AudioClip(pcm=common_pb2.Pcm(samples_f32le=array_to_pcm(clip), sample_rate_hz=RATE))
    with grpc.insecure_channel(gateway.target) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        heard = stub.Listen(gateway_pb2.ListenRequest(image=common_pb2.Image(data=png_bytes(image)), audio=pcm,
                                                      model="ezvsl"), timeout=120)
        builtin = stub.Listen(gateway_pb2.ListenRequest(image=common_pb2.Image(data=png_bytes(image)), audio=pcm),
                              timeout=120)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Listen(gateway_pb2.ListenRequest(image=common_pb2.Image(data=png_bytes(image)), audio=pcm,
                                                  model="ezvsl-typo"), timeout=60)
    assert heard.model == "ezvsl" and builtin.model == "localization"
    np.testing.assert_allclose(from_tensor(heard.heatmap.values), reference.reference_heatmap(model, image, clip),
                               rtol=0, atol=1e-4)
    assert heard.summary and (heard.caption in heard.summary if heard.clear_source else not heard.caption)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and "ezvsl" in caught.value.details()


@pytest.mark.slow
def test_syn_models_and_syn_listen_show_it(gateway, best, tmp_path):
    env = {"SYN_TARGET": gateway.target}
    result = syn("--json", "models", env=env)
    assert result.returncode == 0, result.stderr
    rows = {(r["service"], r["name"]): r for r in json.loads(result.stdout)}
    row = rows[("audio", "ezvsl")]
    assert row["backend"] == "pytorch_checkpoint" and row["family"] == "ezvsl" and row["source"] == str(best)
    assert row["task"] == "sound-localization" and not row["default"] and rows[("audio", "localization")]["default"]
    image, clip = pairs(1, seed=5)[0]
    (tmp_path / "scene.png").write_bytes(png_bytes(image))
    soundfile.write(tmp_path / "sound.wav", clip, RATE, subtype="FLOAT")
    result = syn("--json", "--out", str(tmp_path / "out"), "listen", str(tmp_path / "scene.png"),
                 str(tmp_path / "sound.wav"), "--model", "ezvsl", env=env)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["model"] == "ezvsl" and (tmp_path / "out" / "scene_listen.png").exists()
    result = syn("--json", "--out", str(tmp_path / "out"), "explain", "sound", str(tmp_path / "scene.png"),
                 str(tmp_path / "sound.wav"), "--model", "ezvsl", "--method", "gradient", env=env)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["title"].endswith("(ezvsl)") and [Path(p).name for p in reply["pictures"]] == ["scene_sound_gradient.png"]


def test_explain_localization_opens_ezvsl(stub, best):
    """ExplainLocalization on EZ-VSL: the score explained is Localize's peak_score for the same pair; every
    method of the RPC gives a finite, non-flat map over the network's 224 px input, named with the
    picture's own size and overlaid on it; the input gradient is the score's own (autograd through the
    loaded network, in process)."""
    from PIL import Image
    from synesthesia.v1 import explain_pb2 as E

    from models.explain.methods import explain

    image, clip = pairs(2, seed=7)[1]  # 100 x 333, a clip shorter than the 3 s window
    methods = [E.EXPLAIN_METHOD_GRAD_CAM, E.EXPLAIN_METHOD_GUIDED_GRAD_CAM, E.EXPLAIN_METHOD_GUIDED_BACKPROP,
               E.EXPLAIN_METHOD_GRADIENT, E.EXPLAIN_METHOD_GRADIENT_SQUARED, E.EXPLAIN_METHOD_OCCLUSION]
    located = localize_request(image, clip)
    answer = stub.ExplainLocalization(E.ExplainLocalizationRequest(
        image=located.image, audio=located.audio, methods=methods, model="ezvsl"), timeout=300)
    assert answer.model == "ezvsl"
    assert answer.score == pytest.approx(stub.Localize(located, timeout=120).peak_score, abs=1e-4)
    assert [e.method for e in answer.explanations] == methods
    maps = {}
    for e in answer.explanations:
        heat = maps[e.method] = from_tensor(e.heatmap.values)
        assert heat.shape == (ezvsl.IMAGE_SIZE, ezvsl.IMAGE_SIZE) and np.isfinite(heat).all(), e.method
        assert (e.heatmap.image_height_px, e.heatmap.image_width_px) == image.shape[:2]
        assert Image.open(io.BytesIO(e.overlay_png)).size == (image.shape[1], image.shape[0])
    # A random network's Grad-CAM may be all negative, hence all zero after its ReLU: the input-side
    # methods must still see the picture.
    for method in methods[2:]:
        assert maps[method].max() > maps[method].min(), method

    loaded = ezvsl.EZVSLLocalizer(entry(best), "cpu")
    pixels, target = loaded.explain_pixels(image), loaded.explain_target(clip)
    for method in ("grad_cam", "guided_grad_cam"):  # served == evaluated, on the image ResNet's last block
        np.testing.assert_allclose(maps[getattr(E, f"EXPLAIN_METHOD_{method.upper()}")],
                                   explain(method, target, pixels)[0].numpy(), atol=1e-5)
    pixels.requires_grad_(True)
    target(pixels).sum().backward()
    gradient = pixels.grad.abs().amax(1)[0].numpy()
    correlation = np.corrcoef(gradient.ravel(), maps[E.EXPLAIN_METHOD_GRADIENT].ravel())[0, 1]
    assert correlation > 0.99, correlation
