"""Every Hugging Face captioning family through the real Captioning service, from a model repository.

The test saves tiny random models in each family's real on-disk format (tests/tiny_hf.py):
vision-encoder-decoder with a ViT, a DeiT (two extra tokens) and a Donut Swin encoder, BLIP,
GIT, and through the generic image-text-to-text family BLIP-2, Pix2Struct, LLaVA and PaliGemma; writes
one `<name>.model.yaml` entry for each plus an explicit entry for the built-in checkpoint
(the default), points SYN_MODEL_REPOSITORY at that directory and calls the service over
gRPC. Each served caption must equal the family's own `generate` decoded in-process, and
every family that attends from text to image patches must give each word a map over its
patch grid; BLIP-2 (whose language model reads learned queries, not patches) gives none.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from models.shapesworld import EVAL_SEEDS, render_scene
from models.training import CHECKPOINT_DIR
from synesthesia.tensors import from_tensor
from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc
from tests import tiny_hf
from tests.captioning.conftest import OPTIONS, caption_request, encode, stream_request

pytestmark = pytest.mark.slow
IMAGE = Image.fromarray(render_scene(EVAL_SEEDS[36001]).image).resize((90, 70))
GENERIC = "image-text-to-text"
FAMILIES = {  # entry name -> (builder, family ListModels reports, words in its architecture)
    "tiny-vit": (lambda d: tiny_hf.vision_encoder_decoder(d, "vit"), "vision-encoder-decoder", "vit"),
    "tiny-deit": (lambda d: tiny_hf.vision_encoder_decoder(d, "deit"), "vision-encoder-decoder", "deit"),
    "tiny-donut": (lambda d: tiny_hf.vision_encoder_decoder(d, "swin"), "vision-encoder-decoder", "donut"),
    "tiny-blip": (tiny_hf.blip, "blip", "blip"),
    "tiny-git": (tiny_hf.git, "git", "git"),
    "tiny-blip2": (tiny_hf.blip2, GENERIC, "blip-2"),
    "tiny-pix2struct": (tiny_hf.pix2struct, GENERIC, "pix2struct"),
    "tiny-llava": (tiny_hf.llava, GENERIC, "llava"),
    "tiny-paligemma": (tiny_hf.paligemma, GENERIC, "paligemma"),
}
NO_MAPS = {"tiny-blip2"}  # BLIP-2's language model attends to the Q-Former's queries, not to patches


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("repository")
    for name, (build, _, _) in FAMILIES.items():
        tiny_hf.entry(root, name, "captioning", build(root / "weights" / name))
    tiny_hf.entry(root, "captioning", "captioning", CHECKPOINT_DIR / "captioning.safetensors", family="builtin",
                  default=True)
    return root


@pytest.fixture(scope="module")
def stub(repository, tmp_path_factory):
    from tests.servers import ServiceProcess

    server = ServiceProcess("services.captioning", {"SYN_MODEL_REPOSITORY": str(repository)},
                            tmp_path_factory.mktemp("logs")).start(timeout_s=400)
    try:
        with grpc.insecure_channel(server.target, options=OPTIONS) as channel:
            yield captioning_pb2_grpc.CaptioningStub(channel)
    finally:
        server.stop()


def in_process(directory, family: str, image: Image.Image, beams: int, limit: int) -> str:
    import transformers as tf

    if family == GENERIC:
        return generic_in_process(directory, image, beams, limit)
    cls = {"vision-encoder-decoder": tf.VisionEncoderDecoderModel, "blip": tf.BlipForConditionalGeneration,
           "git": tf.GitForCausalLM}[family]
    model = cls.from_pretrained(directory).eval()
    pixels = tf.AutoImageProcessor.from_pretrained(directory)(images=image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ids = model.generate(pixel_values=pixels, num_beams=beams, max_new_tokens=limit, do_sample=False)
    return " ".join(tf.AutoTokenizer.from_pretrained(directory).decode(ids[0], skip_special_tokens=True).split())


def generic_in_process(directory, image: Image.Image, beams: int, limit: int) -> str:
    """The image-text-to-text family's contract: the picture at the model's size (32 px here), then the
    model's own processor with the empty prompt (LLaVA's processor needs its <image> placeholder)."""
    import transformers as tf

    model = tf.AutoModelForImageTextToText.from_pretrained(directory).eval()
    processor = tf.AutoProcessor.from_pretrained(directory)
    kwargs = {"images": [image.resize((32, 32), Image.BICUBIC)], "return_tensors": "pt"}
    if model.config.model_type == "pix2struct":
        kwargs["max_patches"] = processor.image_processor.max_patches
    else:
        kwargs["text"] = [tiny_hf.IMAGE_TOKEN if model.config.model_type in ("llava", "paligemma") else ""]
    inputs = {k: v for k, v in processor(**kwargs).items() if k != "labels"}  # PaliGemma's, for training
    with torch.no_grad():
        ids = model.generate(**inputs, num_beams=beams, max_new_tokens=limit, do_sample=False)
    return " ".join(processor.tokenizer.decode(ids[0], skip_special_tokens=True).split())


def test_list_models_shows_every_family_its_source_and_the_default(stub, repository):
    models = {m.name: m for m in stub.ListModels(captioning_pb2.ListCaptioningModelsRequest(), timeout=30).models}
    assert set(models) == {*FAMILIES, "captioning"}
    assert [n for n, m in models.items() if m.is_default] == ["captioning"]
    assert models["captioning"].family == "builtin" and models["captioning"].weights_sha256
    for name, (_, family, word) in FAMILIES.items():
        info = models[name]
        assert info.family == family and info.task == "captioning", info
        assert word in info.architecture and info.source == str(repository / "weights" / name)
        assert info.parameter_count > 10_000
        # A model whose words carry no maps says why; the others have nothing to add.
        assert ("Q-Former" in info.notes) if name in NO_MAPS else not info.notes, info.notes


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_captions_like_its_own_generate_with_a_map_per_word(stub, repository, name):
    _, family, _ = FAMILIES[name]
    data = encode(IMAGE)
    reply = stub.Caption(caption_request(data, 2, 5, model=name, attention=True), timeout=120)
    assert reply.model == name
    assert reply.caption == in_process(repository / "weights" / name, family, IMAGE, 2, 5)
    assert reply.words and np.isfinite(reply.log_probability)
    for word in reply.words:
        if name in NO_MAPS:
            assert not word.HasField("attention"), name
            continue
        heat = from_tensor(word.attention.values)
        assert heat.shape == (4, 4), (name, heat.shape)  # 32 px / 8 px patches; Swin: 32 / 4 / 2
        assert heat.sum() == pytest.approx(1.0, abs=1e-4) and (heat >= 0).all()
        assert (word.attention.image_width_px, word.attention.image_height_px) == (90, 70)
    streamed = list(stub.StreamCaption(stream_request(data, 2, 5, model=name), timeout=120))
    assert [m.word.text for m in streamed] == [w.text for w in reply.words] and streamed[-1].is_final


def test_the_builtin_stays_the_default_and_unknown_models_are_named(stub):
    data = encode(IMAGE)
    assert stub.Caption(caption_request(data), timeout=60).model == "captioning"
    with pytest.raises(grpc.RpcError) as caught:
        stub.Caption(caption_request(data, model="no-such-model"), timeout=60)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details().startswith("options.model:") and "tiny-blip" in caught.value.details()


def test_the_generic_family_continues_its_prompt_option(tmp_path):
    """`prompt` reaches the model's processor: BLIP-2 captions as its own generate does from that text, and
    LLaVA's processor gets its <image> placeholder first when the prompt has none."""
    import transformers as tf

    from models import families
    from models.repository import ModelEntry

    for build, prompt, sent in ((tiny_hf.blip2, "a small", "a small"),
                                (tiny_hf.llava, "a small", f"{tiny_hf.IMAGE_TOKEN}a small")):
        directory = build(tmp_path / build.__name__)
        model = families.load(ModelEntry("p", "captioning", "transformers", directory, options={"prompt": prompt}),
                              "cpu")
        assert model.prompt == sent
        (caption,) = model.caption(model.prepare(IMAGE)[None], [1], [4])
        reference = tf.AutoModelForImageTextToText.from_pretrained(directory).eval()
        processor = tf.AutoProcessor.from_pretrained(directory)
        with torch.no_grad():
            ids = reference.generate(**processor(images=[IMAGE.resize((32, 32), Image.BICUBIC)], text=[sent],
                                                 return_tensors="pt"), num_beams=1, max_new_tokens=4, do_sample=False)
        new = ids[0][processor(images=[IMAGE.resize((32, 32))], text=[sent], return_tensors="pt")["input_ids"].shape[1]:]
        assert caption.text == " ".join(processor.tokenizer.decode(new, skip_special_tokens=True).split())
