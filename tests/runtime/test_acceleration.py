"""The GPU speed-up switches (SYN_AUTOCAST, SYN_CHANNELS_LAST, SYN_TORCH_COMPILE) give the float32
answers on CPU, within the tolerances services/runtime/acceleration.py states, in-process and
through a real captioning service."""

from __future__ import annotations

import copy

import grpc
import numpy as np
import pytest
import torch

from models.captioning.checkpoint import load_captioner
from models.captioning.decoding import beam_search
from models.embedding.checkpoint import load_embedder
from models.images import images_to_batch
from models.shapesworld import EVAL_SEEDS, render_scene
from services.runtime import Settings
from services.runtime.acceleration import Acceleration, fold_batchnorms
from synesthesia.pictures import png_bytes
from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2

SCENES = [render_scene(seed) for seed in EVAL_SEEDS[:16]]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def models():
    return load_captioner().model, load_embedder().model


def outputs(models, acceleration: Acceleration, count: int = len(SCENES)):
    """(captions, caption log-probabilities, image embeddings) with `acceleration` applied to copies."""
    captioner, embedder = (acceleration.module(copy.deepcopy(m)) for m in models)
    captioner.encode = acceleration.function(captioner.encode)
    encode_images = acceleration.function(embedder.encode_images)
    images = [s.image for s in SCENES[:count]]
    with torch.inference_mode(), acceleration.autocasting(CPU):
        found = beam_search(captioner, acceleration.images(images_to_batch(images, captioner.config.image_size)),
                            [3] * count, [20] * count)
        vectors = encode_images(acceleration.images(images_to_batch(images, embedder.config.image_size)))
    return [c.text for c in found], np.array([c.log_prob for c in found]), vectors.float().numpy()


@pytest.fixture(scope="module")
def reference(models):
    with_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return outputs(models, Acceleration())
    finally:
        torch.set_num_threads(with_threads)


# (setting, captions that must match of 16, caption log-prob tolerance, minimum embedding cosine)
CASES = {
    "channels-last": (Acceleration(channels_last=True), 16, 1e-4, 0.99999),
    "bf16 autocast": (Acceleration(autocast="bf16"), 15, 0.1, 0.99),
    "fp16 autocast": (Acceleration(autocast="fp16"), 15, 0.05, 0.999),
    "bf16 + channels-last": (Acceleration(autocast="bf16", channels_last=True), 15, 0.1, 0.99),
}


@pytest.mark.parametrize("case", list(CASES))
def test_switch_matches_float32_eager_within_its_tolerance(models, reference, case):
    acceleration, same_captions, log_prob_tolerance, min_cosine = CASES[case]
    captions, log_probs, vectors = outputs(models, acceleration)
    ref_captions, ref_log_probs, ref_vectors = reference
    agree = [a == b for a, b in zip(captions, ref_captions)]
    assert sum(agree) >= same_captions, list(zip(captions, ref_captions))
    assert np.abs(log_probs - ref_log_probs)[agree].max() <= log_prob_tolerance
    cosine = (vectors * ref_vectors).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(ref_vectors, axis=1)
    assert cosine.min() >= min_cosine


@pytest.mark.slow
def test_torch_compile_matches_float32_eager(models, reference):
    # Inductor compiles C++ kernels on CPU: minutes on a small machine, so only the embedding encoder.
    _, embedder = models
    compiled = Acceleration(compile="default").function(copy.deepcopy(embedder).encode_images)
    images = images_to_batch([s.image for s in SCENES], embedder.config.image_size)
    with torch.inference_mode():
        vectors = compiled(images).numpy()
    np.testing.assert_allclose(vectors, reference[2], atol=1e-4)


@pytest.mark.slow
def test_a_compiled_encoder_is_compiled_for_every_batch_size_before_it_serves(models, reference):
    # Without the warm-up the first batch of 1 and the first full batch each compiled while serving
    # (torch.compile specialises on 1 and bounds its dynamic graph by the sizes it has seen).
    from models import families
    from models.repository import read_repository
    from models.training import CHECKPOINT_DIR

    entry = next(e for e in read_repository(CHECKPOINT_DIR) if e.name == "embedding")
    embedder = families.load(entry, CPU)
    embedder.accelerate(Acceleration(compile="default"), max_batch_size=4)
    prepared = [embedder.prepare(scene.image) for scene in SCENES[:4]]
    with torch.inference_mode(), torch._dynamo.config.patch(error_on_recompile=True):
        for size in (1, 4, 2, 3, 1):
            vectors = embedder.embed_images(prepared[:size]).numpy()
            np.testing.assert_allclose(vectors, reference[2][:size], atol=1e-4)


def test_a_compile_that_fails_in_the_warm_up_names_the_setting():
    def no_compiler(batch):
        if batch.shape[0] == 3:
            raise OSError("g++: not found")
        return batch

    with pytest.raises(RuntimeError, match=r"SYN_TORCH_COMPILE=default: compiling at batch size 3 failed "
                                           r"\(OSError: g\+\+: not found\)"):
        Acceleration(compile="default").warm(no_compiler, torch.zeros(1, 3, 8, 8), 4, CPU)
    Acceleration().warm(no_compiler, torch.zeros(1, 3, 8, 8), 4, CPU)  # off: nothing is called


def test_settings_are_read_and_bad_values_refused(monkeypatch):
    monkeypatch.setenv("SYN_AUTOCAST", "BF16")
    monkeypatch.setenv("SYN_CHANNELS_LAST", "1")
    monkeypatch.setenv("SYN_TORCH_COMPILE", "reduce-overhead")
    assert Acceleration.from_settings(Settings.from_env()) == Acceleration("bf16", True, "reduce-overhead")
    for name, bad in (("SYN_AUTOCAST", "fp8"), ("SYN_CHANNELS_LAST", "yes please"), ("SYN_TORCH_COMPILE", "fast")):
        monkeypatch.setenv(name, bad)
        with pytest.raises(SystemExit, match=name):
            Acceleration.from_settings(Settings.from_env())
        monkeypatch.delenv(name)
    assert Acceleration.from_settings(Settings.from_env()) == Acceleration()


def test_auto_lays_out_nhwc_on_a_cpu_and_not_on_a_gpu(monkeypatch):
    monkeypatch.delenv("SYN_CHANNELS_LAST", raising=False)
    auto = Acceleration.from_settings(Settings.from_env())
    assert auto.channels_last is None and auto.on(CPU).channels_last and auto.on(CPU).enabled
    assert not auto.on(torch.device("cuda")).channels_last and not auto.on(torch.device("cuda")).enabled
    for value, layout in (("0", False), ("1", True), ("auto", None), ("AUTO", None), ("", None)):
        monkeypatch.setenv("SYN_CHANNELS_LAST", value)
        assert Acceleration.from_settings(Settings.from_env()).channels_last is layout
    assert Acceleration(channels_last=False).on(CPU) == Acceleration(channels_last=False)  # an explicit 0 holds


@pytest.mark.parametrize("which", ["captioning", "embedding"])
def test_batchnorms_fold_into_their_convolutions_with_the_same_outputs(models, which):
    captioner, embedder = models
    model = captioner if which == "captioning" else embedder
    encode = "encode" if which == "captioning" else "encode_images"
    norms = [name for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    folded = copy.deepcopy(model)
    assert fold_batchnorms(folded) == len(norms) == 6
    modules = dict(folded.named_modules())
    assert all(isinstance(modules[name], torch.nn.Identity) for name in norms)
    assert set(modules) == {name for name, _ in model.named_modules()}  # every other layer keeps its name
    images = images_to_batch([s.image for s in SCENES], model.config.image_size)
    with torch.inference_mode():
        np.testing.assert_allclose(getattr(folded, encode)(images), getattr(model, encode)(images), atol=1e-5)


def test_a_served_copy_leaves_the_loaded_network_as_it_was(models):
    _, embedder = models
    before = {k: v.clone() for k, v in embedder.state_dict().items()}
    served = Acceleration(channels_last=True).served_copy(embedder)
    assert served is not embedder
    after = embedder.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in embedder.modules())  # explanations read these
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in served.modules())
    first = next(m for m in embedder.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.weight.is_contiguous()  # the loaded network stays NCHW
    assert Acceleration(channels_last=False).served_copy(embedder) is embedder


def test_a_service_with_autocast_and_channels_last_captions_like_float32(service_process, reference):
    server = service_process("captioning", {"SYN_AUTOCAST": "bf16", "SYN_CHANNELS_LAST": "1"})
    with grpc.insecure_channel(server.target) as channel:
        stub = captioning_pb2_grpc.CaptioningStub(channel)
        captions = [stub.Caption(captioning_pb2.CaptionRequest(image=common_pb2.Image(data=png_bytes(s.image))),
                                 timeout=60).caption for s in SCENES]
    assert sum(a == b for a, b in zip(captions, reference[0])) >= 15


@pytest.mark.parametrize("layout", ["auto", "0"])
def test_a_service_on_a_cpu_serves_nhwc_by_default_and_answers_as_float32_eager(service_process, reference, layout):
    server = service_process("captioning", {"SYN_CHANNELS_LAST": layout})
    with grpc.insecure_channel(server.target) as channel:
        stub = captioning_pb2_grpc.CaptioningStub(channel)
        found = [stub.Caption(captioning_pb2.CaptionRequest(image=common_pb2.Image(data=png_bytes(s.image))),
                              timeout=60) for s in SCENES]
    assert [f.caption for f in found] == reference[0]
    np.testing.assert_allclose([f.log_probability for f in found], reference[1], atol=1e-4)
    said = "serves with autocast=off channels_last=1 compile=off"
    assert (said in server.log_path.read_text(errors="replace")) == (layout == "auto")


def test_a_bad_switch_stops_the_service_naming_the_setting(service_process):
    with pytest.raises(RuntimeError, match="SYN_AUTOCAST"):
        service_process("captioning", {"SYN_AUTOCAST": "fp8"})
