"""DF-GAN served from its released files (issue 17, item 2).

A tiny DF-GAN release is written in the reference on-disk layout (tests/generation/reference_dfgan.py:
the training state with netG/netD/netC and optimizers, the DAMSM text encoder, the caption
pickle), the pickle is converted to JSON by the documented command, and a real Generation
service serves it from a model repository entry beside the built-in GAN. Its images must equal
DF-GAN's own sampling path (RNN_ENCODER + NetG + save_image) for the same noise, to the PNG's
rounding; broken files must stop start-up naming the model and the keys.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from models import families
from models.generation.dfgan import DFGAN
from models.generation.dfgan_vocab import VocabularyError, convert, read_caption_pickle, tokenize
from models.generation.sampling import sample_noise
from models.hf import LoadError
from models.repository import ModelEntry, read_repository
from models.training import CHECKPOINT_DIR
from synesthesia.v1 import common_pb2
from tests.generation import reference_dfgan
from tests.generation.helpers import decode_png, list_models, text_to_image
from tests.runtime.helpers import field_violations

ROOT = Path(__file__).resolve().parents[2]
NAME = "dfgan-bird"
PROMPT = "This bird has a red crown and a white belly."


def convert_command(source: Path, target: Path) -> subprocess.CompletedProcess:
    """The one-time conversion exactly as docs/generation.md tells users to run it."""
    return subprocess.run([sys.executable, "-m", "models.generation.dfgan_vocab", str(source), str(target)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def write_entry(repository: Path, name: str = NAME, **options) -> Path:
    """`<name>.model.yaml` with paths relative to the repository, as a user writes it."""
    entry = {"task": "text-to-image", "family": "dfgan", "path": "bird/state_epoch_1220.pth",
             "options": {"text_encoder": "bird/text_encoder200.pth", "vocabulary": "bird/vocab.json", **options}}
    path = repository / f"{name}.model.yaml"
    path.write_text(yaml.safe_dump(entry))
    return path


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A repository holding a tiny DF-GAN release, its converted vocabulary and an entry for it."""
    repository = tmp_path_factory.mktemp("dfgan-repository")
    written = reference_dfgan.write_release(repository / "bird", multi_gpus=True)
    result = convert_command(written.captions, repository / "bird" / "vocab.json")
    assert result.returncode == 0, result.stderr
    write_entry(repository)
    (repository / "text2image.model.yaml").write_text(yaml.safe_dump(
        {"task": "text-to-image", "family": "builtin", "path": str(CHECKPOINT_DIR / "text2image.safetensors"),
         "default": True}))
    return repository, written


def entry_for(repository: Path, name: str = NAME) -> ModelEntry:
    return next(e for e in read_repository(repository) if e.name == name)


# --- the vocabulary: converted once, never unpickled by the service ------------------------------------

def test_the_converter_writes_wordtoix_as_json(release, tmp_path):
    repository, written = release
    document = json.loads((repository / "bird" / "vocab.json").read_text())
    assert document["wordtoix"] == written.wordtoix and document["words"] == len(written.wordtoix)
    assert document["source"] == "captions_DAMSM.pickle"
    assert "train" not in json.dumps(document)  # the captions are dropped


class _Bomb:
    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


def test_the_converter_refuses_a_pickle_naming_any_global_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    hostile = tmp_path / "captions_DAMSM.pickle"
    hostile.write_bytes(pickle.dumps([[], [], {0: "<end>"}, _Bomb(os.system, f"touch {marker}")], protocol=2))
    result = convert_command(hostile, tmp_path / "vocab.json")
    assert result.returncode == 1
    assert "system" in result.stderr and "not read" in result.stderr
    assert not marker.exists() and not (tmp_path / "vocab.json").exists()
    # Any class, harmless or not, is refused: a caption pickle holds only builtin containers.
    from collections import OrderedDict

    with pytest.raises(VocabularyError, match="collections.OrderedDict"):
        read_caption_pickle(pickle.dumps([[], [], {}, OrderedDict(a=0)]))
    with pytest.raises(VocabularyError, match=r"ixtoword .* does not invert"):
        read_caption_pickle(pickle.dumps([[], [], {0: "a", 1: "c"}, {"a": 0, "b": 1}]))
    with pytest.raises(VocabularyError, match="not 0..1"):
        read_caption_pickle(pickle.dumps([[], [], {0: "a", 2: "b"}, {"a": 0, "b": 2}]))


def test_prompts_are_tokenised_as_dfgan_samples_them():
    wordtoix = {w: i for i, w in enumerate(reference_dfgan.WORDS)}
    for prompt in ["This bird has a RED crown, and a white belly!", "a  blue\tbird_with long-tail",
                   "café au lait bird", "日本 bird \ufffd\ufffdbeak", "3 small yellow wings"]:
        ids = [wordtoix[w] for w in tokenize(prompt) if w in wordtoix]
        assert ids == reference_dfgan.tokenize(wordtoix, prompt), prompt
    assert tokenize("café au lait") == ["caf", "au", "lait"]


# --- noise -------------------------------------------------------------------------------------------

def test_noise_is_dfgans_truncated_normal_and_reproducible():
    from scipy import stats

    noise = sample_noise(11, 200, 100, (2.0, 0.88))
    assert noise.shape == (200, 100) and float(noise.abs().max()) <= 1.76 + 1e-6
    # The distribution of DF-GAN's lib/utils.truncated_noise: truncnorm(-2, 2) * trunc_rate.
    fit = stats.kstest(noise.flatten().numpy(), stats.truncnorm(-2, 2, scale=0.88).cdf)
    assert fit.pvalue > 0.001, fit
    assert torch.equal(noise, sample_noise(11, 200, 100, (2.0, 0.88)))
    assert torch.equal(noise[:3], sample_noise(11, 3, 100, (2.0, 0.88)))
    assert not torch.equal(noise[:3], sample_noise(12, 3, 100, (2.0, 0.88)))


# --- strict loading ------------------------------------------------------------------------------------

def _rewrite_state(path: Path, change) -> None:
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def broken_release(tmp_path: Path, release) -> Path:
    """A copy of the release's repository to break one file of."""
    repository, _ = release
    target = tmp_path / "repository"
    shutil.copytree(repository, target)
    return target


def test_the_release_loads_in_process_and_reads_its_sizes_from_the_tensors(release):
    repository, written = release
    model = families.load(entry_for(repository), "cpu")
    assert isinstance(model, DFGAN)
    assert model.noise_dim == 100 and model.image_size == 256 and model.noise_truncation == (2.0, 0.88)
    assert model.details.family == "dfgan" and "nf 2" in model.details.architecture
    assert model.vocabulary == reference_dfgan.WORDS[1:]  # not "<end>": no prompt can reach it
    expected = sum(p.numel() for p in (*written.netG.parameters(), *written.encoder.parameters()))
    assert model.details.parameter_count == expected


def test_a_vocabulary_without_the_warm_up_words_still_warms_up(tmp_path):
    written = reference_dfgan.write_release(tmp_path / "bird", words=["<end>", "bird", "crown", "wing"])
    convert(written.captions, tmp_path / "bird" / "vocab.json")
    write_entry(tmp_path)
    model = families.load(entry_for(tmp_path), "cpu")
    assert model.encode_prompt("a large red circle") == ((), ["a", "large", "red", "circle"])
    with torch.inference_mode():
        families.self_test("text-to-image", model)


@pytest.mark.parametrize("damage, message", [
    (lambda s: s["model"]["netG"].pop("module.GBlocks.3.c2.bias"), "missing weights: GBlocks.3.c2.bias"),
    (lambda s: s["model"]["netG"].__setitem__("module.to_rgb.1.weight", torch.zeros(3, 2, 5, 5)),
     r"mis-shaped weights: to_rgb.1.weight \(3, 2, 5, 5\) \(expected \(3, 2, 3, 3\)\)"),
    (lambda s: s["model"]["netG"].__setitem__("module.GBlocks.0.extra", torch.zeros(1)),
     "unexpected weights: GBlocks.0.extra"),
    (lambda s: s["model"]["netG"].pop("module.fc.weight"), "missing weights: fc.weight"),
    (lambda s: s["model"].pop("netG"), r"has no 'netG' in \['model'\]"),
])
def test_a_damaged_generator_fails_naming_the_model_and_the_keys(release, tmp_path, damage, message):
    repository = broken_release(tmp_path, release)
    _rewrite_state(repository / "bird" / "state_epoch_1220.pth", damage)
    with pytest.raises(LoadError, match=message) as caught:
        families.load(entry_for(repository), "cpu")
    assert f"model '{NAME}'" in str(caught.value)


def test_only_netG_is_taken_from_the_training_state(release, tmp_path):
    repository = broken_release(tmp_path, release)
    _rewrite_state(repository / "bird" / "state_epoch_1220.pth", lambda s: s["model"].update(netD={}, netC={}))
    families.load(entry_for(repository), "cpu")


def test_a_pickled_object_is_refused_without_being_run(release, tmp_path):
    repository = broken_release(tmp_path, release)
    marker = tmp_path / "ran"
    torch.save({"model": {"netG": _Bomb(open, str(marker))}},
               repository / "bird" / "state_epoch_1220.pth")
    with pytest.raises(LoadError, match="holds a pickled object, not only tensors.*Unsupported global"):
        families.load(entry_for(repository), "cpu")
    assert not marker.exists()
    # A whole module saved where a state_dict belongs (torch.save(text_encoder)) is refused the same way.
    shutil.copy(release[0] / "bird" / "state_epoch_1220.pth", repository / "bird" / "state_epoch_1220.pth")
    torch.save(reference_dfgan.RNN_ENCODER(18, ninput=6, nhidden=8), repository / "bird" / "text_encoder200.pth")
    with pytest.raises(LoadError, match=r"text_encoder200.pth holds a pickled object.*RNN_ENCODER"):
        families.load(entry_for(repository), "cpu")


def test_a_mismatched_text_encoder_or_vocabulary_is_refused(release, tmp_path):
    repository = broken_release(tmp_path, release)
    encoder = repository / "bird" / "text_encoder200.pth"
    torch.save(reference_dfgan.RNN_ENCODER(18, ninput=6, nhidden=16).state_dict(), encoder)
    with pytest.raises(LoadError, match="takes a 8-d sentence .* gives 16-d"):
        families.load(entry_for(repository), "cpu")
    state = reference_dfgan.RNN_ENCODER(18, ninput=6, nhidden=8).state_dict()
    state.pop("rnn.bias_hh_l0_reverse")
    torch.save(state, encoder)
    with pytest.raises(LoadError, match="missing weights: rnn.bias_hh_l0_reverse"):
        families.load(entry_for(repository), "cpu")
    torch.save(reference_dfgan.RNN_ENCODER(20, ninput=6, nhidden=8).state_dict(), encoder)
    with pytest.raises(LoadError, match="vocab.json has 18 words but .* embeds 20"):
        families.load(entry_for(repository), "cpu")
    (repository / "bird" / "vocab.json").write_text('{"wordtoix": {}}')
    with pytest.raises(LoadError, match="not a vocabulary written by `python -m models.generation.dfgan_vocab`"):
        families.load(entry_for(repository), "cpu")


def test_entry_options_are_checked(release, tmp_path):
    repository = broken_release(tmp_path, release)
    write_entry(repository, trunc_rate=1.5)
    with pytest.raises(LoadError, match="trunc_rate must be in"):
        families.load(entry_for(repository), "cpu")
    write_entry(repository, text_encodr="x")
    with pytest.raises(LoadError, match="unknown options text_encodr"):
        families.load(entry_for(repository), "cpu")
    (repository / f"{NAME}.model.yaml").write_text(yaml.safe_dump(
        {"task": "text-to-image", "family": "dfgan", "path": "bird/state_epoch_1220.pth"}))
    with pytest.raises(Exception, match="needs options.text_encoder"):
        families.load(entry_for(repository), "cpu")


def test_a_service_with_a_damaged_release_never_reports_serving(release, tmp_path, service_process):
    repository = broken_release(tmp_path, release)
    _rewrite_state(repository / "bird" / "state_epoch_1220.pth",
                   lambda s: s["model"]["netG"].__setitem__("module.GBlocks.2.c1.weight", torch.zeros(16, 16, 1, 1)))
    with pytest.raises(RuntimeError) as caught:
        service_process("generation", env={"SYN_MODEL_REPOSITORY": str(repository)})
    assert "exited with 1" in str(caught.value)
    assert f"model '{NAME}'" in str(caught.value) and "GBlocks.2.c1.weight" in str(caught.value)


# --- served by the Generation service ----------------------------------------------------------------

@pytest.fixture(scope="module")
def server(release, shared_service):
    repository, _ = release
    return shared_service("generation", {"SYN_MODEL_REPOSITORY": str(repository)})


def test_served_images_equal_dfgans_own_sampling_for_the_same_noise(server, release, tmp_path):
    _, written = release
    reply = text_to_image(server.target, PROMPT, image_count=3, seed=2024, model=NAME)
    assert reply.model == NAME and reply.seed == 2024 and list(reply.unknown_words) == []
    served = np.stack([decode_png(i.data) for i in reply.images])
    assert served.shape == (3, 256, 256, 3)
    noise = sample_noise(2024, 3, 100, (2.0, 0.88))
    paths = reference_dfgan.reference_pngs(written.netG, written.encoder, written.wordtoix, PROMPT, noise, tmp_path)
    reference = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    difference = np.abs(served.astype(int) - reference.astype(int))
    # Equal up to the last rounding step: padded batches may move a value across a .5 boundary.
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3, (difference.max(), (difference > 0).mean())
    assert served.std() > 5  # a picture, not a constant


def test_the_prompt_conditions_the_picture_and_unknown_words_are_reported(server):
    red = text_to_image(server.target, "a bird with a red crown, please", seed=5, model=NAME)
    assert list(red.unknown_words) == ["with", "please"]
    assert red.images[0].data == text_to_image(server.target, "A BIRD, a red crown", seed=5,
                                               model=NAME).images[0].data
    blue = text_to_image(server.target, "a bird with a blue crown", seed=5, model=NAME)
    assert red.images[0].data != blue.images[0].data
    with pytest.raises(grpc.RpcError) as caught:
        text_to_image(server.target, "sparkling unicorns", model=NAME)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value)[0][0] == "prompt" and "vocabulary" in caught.value.details()


def test_equal_seeds_give_equal_bytes_whatever_shares_the_batch(server):
    alone = [i.data for i in text_to_image(server.target, PROMPT, image_count=2, seed=77, model=NAME).images]
    requests = [(PROMPT, 2, 77), ("a small yellow bird", 5, 3), (PROMPT, 2, 77), ("black beak", 1, 9)] * 2
    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        replies = list(pool.map(lambda r: text_to_image(server.target, r[0], r[1], r[2], model=NAME), requests))
    for (prompt, _, seed), reply in zip(requests, replies):
        if seed == 77:
            assert [i.data for i in reply.images] == alone
    five = text_to_image(server.target, PROMPT, image_count=5, seed=77, model=NAME).images
    assert [i.data for i in five[:2]] == alone
    other = text_to_image(server.target, PROMPT, image_count=2, seed=78, model=NAME).images
    assert [i.data for i in other] != alone


def test_list_models_describes_the_release_beside_the_builtin(server, release):
    repository, _ = release
    models = {m.name: m for m in list_models(server.target)}
    assert set(models) == {NAME, "text2image"}
    dfgan = models[NAME]
    assert dfgan.task == "text-to-image" and dfgan.family == "dfgan" and not dfgan.is_default
    assert dfgan.backend == common_pb2.MODEL_BACKEND_PYTORCH_CHECKPOINT
    assert dfgan.source == str(repository / "bird" / "state_epoch_1220.pth")
    assert len(dfgan.weights_sha256) == 64 and dfgan.parameter_count > 0 and "256 px" in dfgan.architecture
    assert models["text2image"].is_default and models["text2image"].backend == common_pb2.MODEL_BACKEND_BUILTIN
    # The default is still the built-in GAN.
    assert text_to_image(server.target, "a large red circle", seed=1).model == "text2image"


# --- through the gateway and the CLI -------------------------------------------------------------------

@pytest.mark.slow
def test_imagine_and_syn_reach_dfgan_through_the_gateway(server, upstream_targets, tmp_path):
    from synesthesia.v1 import gateway_pb2, gateway_pb2_grpc
    from tests.cli.test_cli import syn
    from tests.conftest import gateway_env
    from tests.servers import ServiceProcess

    front = ServiceProcess("services.gateway", gateway_env({**upstream_targets, "generation": server.target}),
                           tmp_path).start()
    try:
        with grpc.insecure_channel(front.target) as channel:
            imagined = gateway_pb2_grpc.GatewayStub(channel).Imagine(
                gateway_pb2.ImagineRequest(prompt=PROMPT + " Sparkly!", image_count=2, seed=31, model=NAME),
                timeout=120)
        assert imagined.model == NAME and imagined.seed == 31 and list(imagined.unknown_words) == ["sparkly"]
        direct = text_to_image(server.target, PROMPT, image_count=2, seed=31, model=NAME)
        assert [i.image.data for i in imagined.images] == [i.data for i in direct.images]
        assert all(i.caption for i in imagined.images) and not imagined.warnings

        env = {"SYN_TARGET": front.target}
        listed = syn("--json", "models", env=env)
        assert listed.returncode == 0, listed.stderr
        rows = {r["name"]: r for r in json.loads(listed.stdout)}
        assert rows[NAME]["service"] == "generation" and rows[NAME]["task"] == "text-to-image"
        assert rows[NAME]["backend"] == "pytorch_checkpoint" and rows[NAME]["family"] == "dfgan"
        made = syn("--json", "--out", str(tmp_path), "imagine", PROMPT, "--model", NAME, "--seed", "31", env=env)
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)["model"] == NAME
    finally:
        front.stop()
