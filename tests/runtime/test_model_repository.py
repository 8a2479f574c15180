"""The model repository and strict loading: entries, family choice from config.json, refusals.

A directory behind the wrong class must never be served: the load fails naming the model
and the first offending keys, and the service never reports SERVING.
"""

from __future__ import annotations

import pytest
import torch

from models import families
from models.hf import LoadError
from models.repository import ModelEntry, RepositoryError, read_repository
from models.training import CHECKPOINT_DIR
from tests import tiny_hf


def test_the_shipped_checkpoints_are_the_default_repository():
    entries = {e.name: e for e in read_repository(CHECKPOINT_DIR)}
    assert {"captioning", "embedding", "localization", "text2image"} <= set(entries)
    assert "judge" not in entries  # an evaluation tool, not served
    assert entries["captioning"].family == "builtin" and entries["embedding"].task == "image-text-embedding"


def test_entry_files_are_read_and_checked(tmp_path):
    tiny_hf.entry(tmp_path, "mine", "captioning", tmp_path / "weights", default=True, options={"image_size": 384})
    (entry,) = read_repository(tmp_path)
    assert (entry.name, entry.task, entry.family, entry.default) == ("mine", "captioning", "transformers", True)
    assert entry.path == tmp_path / "weights" and entry.option("image_size") == 384
    (tmp_path / "bad.model.yaml").write_text("task: captioning\npath: x\nfamly: blip\n")
    with pytest.raises(RepositoryError, match="unknown keys famly"):
        read_repository(tmp_path)
    (tmp_path / "bad.model.yaml").write_text("task: painting\nfamily: blip\npath: x\n")
    with pytest.raises(RepositoryError, match="task 'painting'"):
        read_repository(tmp_path)


def test_the_family_comes_from_config_json_never_from_a_guess(tmp_path):
    git = tiny_hf.git(tmp_path / "git")
    assert families.family_of(ModelEntry("g", "captioning", "transformers", git)) == "git"
    clip = tiny_hf.dual_encoder(tmp_path / "clip", "clip")
    assert families.family_of(ModelEntry("c", "image-text-embedding", "transformers", clip)) == "clip"
    with pytest.raises(RepositoryError, match="model_type 'clip', which no captioning family serves"):
        families.family_of(ModelEntry("c", "captioning", "transformers", clip))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RepositoryError, match="config.json does not exist"):
        families.family_of(ModelEntry("e", "captioning", "transformers", tmp_path / "empty"))


def test_captioning_model_types_without_a_line_of_their_own_go_to_the_generic_family(tmp_path):
    for build in (tiny_hf.blip2, tiny_hf.pix2struct, tiny_hf.llava):
        directory = build(tmp_path / build.__name__)
        entry = ModelEntry(build.__name__, "captioning", "transformers", directory)
        assert families.family_of(entry) == families.GENERIC_CAPTIONING
    # Not an image-text-to-text model in transformers: refused, naming what is served.
    clip = tiny_hf.dual_encoder(tmp_path / "clip", "clip")
    with pytest.raises(RepositoryError, match="served: .*image-text-to-text"):
        families.family_of(ModelEntry("c", "captioning", "transformers", clip))


def test_a_generic_captioner_with_a_mis_shaped_weight_fails_naming_it(tmp_path):
    from safetensors.torch import load_file, save_file

    llava = tiny_hf.llava(tmp_path / "llava")
    weights = load_file(llava / "model.safetensors")
    key = next(k for k in weights if "multi_modal_projector" in k and k.endswith("weight"))
    weights[key] = torch.zeros(3, 3)
    save_file(weights, llava / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(LoadError, match=f"model 'bent'.*mis-shaped weights: .*{key.split('.', 1)[-1]}"):
        families.load(ModelEntry("bent", "captioning", "transformers", llava), "cpu")


@pytest.mark.parametrize("build, task, family, keys", [
    (tiny_hf.git, "captioning", "vision-encoder-decoder",
     ("does not fit VisionEncoderDecoderModel", "missing weights: decoder.", "unexpected weights: git.")),
    (tiny_hf.clap, "image-text-embedding", "clip",
     ("does not fit CLIPModel", "missing weights: logit_scale", "unexpected weights: audio_model.")),
], ids=["git-as-vision-encoder-decoder", "clap-as-clip"])
def test_a_directory_behind_the_wrong_class_fails_naming_the_keys(tmp_path, build, task, family, keys):
    directory = build(tmp_path / "weights")
    with pytest.raises(LoadError) as caught:
        families.load(ModelEntry("wrong", task, family, directory), "cpu")
    message = str(caught.value)
    assert "model 'wrong'" in message and all(k in message for k in keys), message


def test_a_clip_directory_with_a_mis_shaped_weight_fails_naming_it(tmp_path):
    from safetensors.torch import load_file, save_file

    clip = tiny_hf.dual_encoder(tmp_path / "clip", "clip")
    weights = load_file(clip / "model.safetensors")
    weights["text_projection.weight"] = torch.zeros(7, 32)
    save_file(weights, clip / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(LoadError, match="mis-shaped weights: text_projection.weight"):
        families.load(ModelEntry("bent", "image-text-embedding", "transformers", clip), "cpu")
    del weights["text_projection.weight"]
    save_file(weights, clip / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(LoadError, match="missing weights: text_projection.weight"):
        families.load(ModelEntry("short", "image-text-embedding", "transformers", clip), "cpu")


def test_pickled_weights_are_refused_without_being_unpickled(tmp_path):
    clip = tiny_hf.dual_encoder(tmp_path / "clip", "clip")
    (clip / "model.safetensors").unlink()
    marker = tmp_path / "executed"

    class Bomb:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"x": Bomb()}, clip / "pytorch_model.bin")
    with pytest.raises(LoadError, match="no .safetensors weights"):
        families.load(ModelEntry("pickle", "image-text-embedding", "transformers", clip), "cpu")
    assert not marker.exists()


@pytest.mark.parametrize("service, build, task, family, offending", [
    ("captioning", tiny_hf.git, "captioning", "vision-encoder-decoder", "missing weights: decoder."),
    ("embedding", tiny_hf.clap, "image-text-embedding", "clip", "unexpected weights: audio_model."),
], ids=["git-as-vision-encoder-decoder", "clap-as-clip"])
def test_a_service_never_serves_a_directory_behind_the_wrong_class(service_process, tmp_path, service, build, task,
                                                                   family, offending):
    directory = build(tmp_path / "weights")
    tiny_hf.entry(tmp_path / "repository", "wrong-class", task, directory, family=family)
    with pytest.raises(RuntimeError) as caught:
        service_process(service, env={"SYN_MODEL_REPOSITORY": str(tmp_path / "repository")})
    assert "exited with 1" in str(caught.value)
    assert "model 'wrong-class'" in str(caught.value) and offending in str(caught.value)
