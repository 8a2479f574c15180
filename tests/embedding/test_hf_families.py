"""Every Hugging Face embedding family through the real Embedding service, from a model repository.

Tiny random CLIP, SigLIP, SigLIP 2, ALIGN and CLAP models are saved in their real on-disk
formats (tests/tiny_hf.py), each behind a `<name>.model.yaml` entry with
`family: transformers` (the family comes from config.json), beside an explicit entry for
the built-in checkpoint (the default). Served vectors must equal the family's own
features computed in-process; SigLIP's text vectors must not depend on batch-mates; CLAP
embeds audio (EmbedAudio, audio items, audio and text queries) and refuses images.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from models.shapesworld import EVAL_SEEDS, render_scene
from models.training import CHECKPOINT_DIR
from synesthesia.tensors import array_to_pcm, from_tensor
from synesthesia.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc
from tests import tiny_hf
from tests.embedding.conftest import OPTIONS, png
from tests.hostile_inputs import AUDIO_PAST_THE_LIMITS

pytestmark = pytest.mark.slow
DUAL = {"tiny-clip": "clip", "tiny-siglip": "siglip", "tiny-siglip2": "siglip2", "tiny-align": "align"}
SCENES = [render_scene(seed).image for seed in EVAL_SEEDS[36010:36013]]
TEXTS = ["a large red circle", "a small blue square on the left of a small green triangle"]


def tone(hz: float, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def pcm(samples: np.ndarray, rate: int = 16000) -> common_pb2.AudioClip:
    return common_pb2.AudioClip(pcm=common_pb2.Pcm(samples_f32le=array_to_pcm(samples), sample_rate_hz=rate))


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("repository")
    for name, kind in DUAL.items():
        tiny_hf.entry(root, name, "image-text-embedding", tiny_hf.dual_encoder(root / "weights" / name, kind))
    tiny_hf.entry(root, "tiny-clap", "audio-text-embedding", tiny_hf.clap(root / "weights" / "tiny-clap"))
    tiny_hf.entry(root, "embedding", "image-text-embedding", CHECKPOINT_DIR / "embedding.safetensors",
                  family="builtin", default=True)
    return root


@pytest.fixture(scope="module")
def stub(repository, tmp_path_factory):
    from tests.servers import ServiceProcess

    env = {"SYN_MODEL_REPOSITORY": str(repository), "SYN_EMBEDDING_INDEX_DIR": str(tmp_path_factory.mktemp("index"))}
    server = ServiceProcess("services.embedding", env, tmp_path_factory.mktemp("logs")).start(timeout_s=400)
    try:
        with grpc.insecure_channel(server.target, options=OPTIONS) as channel:
            yield embedding_pb2_grpc.EmbeddingStub(channel)
    finally:
        server.stop()


def reference(directory, kind: str):
    """(texts -> vectors, images -> vectors) from the family's own classes, in-process."""
    import transformers as tf

    model = tf.AutoModel.from_pretrained(directory).eval()
    tokenizer = tf.AutoTokenizer.from_pretrained(directory)
    processor = tf.AutoImageProcessor.from_pretrained(directory)
    padding = "max_length" if kind.startswith("siglip") else True

    def unit(x):
        x = x if isinstance(x, torch.Tensor) else x.pooler_output
        return torch.nn.functional.normalize(x, dim=-1).numpy()

    def texts(items):
        tokens = tokenizer(items, padding=padding, truncation=True, max_length=16, return_tensors="pt")
        inputs = {"input_ids": tokens["input_ids"]}
        if not kind.startswith("siglip"):
            inputs["attention_mask"] = tokens["attention_mask"]
        with torch.no_grad():
            return unit(model.get_text_features(**inputs))

    def images(items):
        with torch.no_grad():
            return unit(model.get_image_features(**processor(images=[Image.fromarray(i) for i in items],
                                                             return_tensors="pt")))

    return texts, images


def test_list_models_shows_each_family_and_the_default(stub):
    models = {m.name: m for m in stub.ListModels(embedding_pb2.ListEmbeddingModelsRequest(), timeout=30).models}
    assert set(models) == {*DUAL, "tiny-clap", "embedding"}
    # One default per task: the built-in for image-text, the only audio-text model for audio-text.
    assert sorted(n for n, m in models.items() if m.is_default) == ["embedding", "tiny-clap"]
    for name, kind in DUAL.items():
        assert models[name].family == kind and models[name].task == "image-text-embedding"
    assert models["tiny-clap"].family == "clap" and models["tiny-clap"].task == "audio-text-embedding"
    assert all(m.parameter_count > 10_000 for m in models.values())


@pytest.mark.parametrize("name", list(DUAL))
def test_each_dual_encoder_embeds_like_its_own_classes(stub, repository, name):
    texts, images = reference(repository / "weights" / name, DUAL[name])
    served = stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=TEXTS, model=name), timeout=60)
    assert served.model == name
    np.testing.assert_allclose(from_tensor(served.embeddings), texts(TEXTS), atol=1e-4)
    served = stub.EmbedImages(embedding_pb2.EmbedImagesRequest(
        images=[common_pb2.Image(data=png(s)) for s in SCENES], model=name), timeout=60)
    expected = images(SCENES)
    assert from_tensor(served.embeddings).shape == expected.shape  # the dimension is the model's own output's
    np.testing.assert_allclose(from_tensor(served.embeddings), expected, atol=1e-4)


@pytest.mark.parametrize("name", ["tiny-siglip", "tiny-siglip2", "tiny-clip"])
def test_a_texts_vector_does_not_depend_on_its_batch_mates(stub, name):
    alone = stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=[TEXTS[0]], model=name), timeout=60)
    together = stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=[TEXTS[1], TEXTS[0]], model=name), timeout=60)
    np.testing.assert_allclose(from_tensor(together.embeddings)[1], from_tensor(alone.embeddings)[0], atol=1e-5)


def test_clap_embeds_audio_and_texts_like_its_own_classes(stub, repository):
    import transformers as tf

    directory = repository / "weights" / "tiny-clap"
    model = tf.ClapModel.from_pretrained(directory).eval()
    extractor = tf.ClapFeatureExtractor.from_pretrained(directory)
    clips = [tone(440.0), tone(880.0, 0.5)]
    with torch.no_grad():
        features = model.get_audio_features(**extractor(clips, sampling_rate=16000, return_tensors="pt"))
    expected = torch.nn.functional.normalize(getattr(features, "pooler_output", features), dim=-1).numpy()
    served = stub.EmbedAudio(embedding_pb2.EmbedAudioRequest(audio=[pcm(c) for c in clips], model="tiny-clap"),
                             timeout=60)
    assert served.model == "tiny-clap"
    np.testing.assert_allclose(from_tensor(served.embeddings), expected, atol=1e-4)
    # 8 kHz in: resampled to the model's 16 kHz, close to the 16 kHz clip's vector.
    low = stub.EmbedAudio(embedding_pb2.EmbedAudioRequest(audio=[pcm(tone(440.0, rate=8000), 8000)],
                                                          model="tiny-clap"), timeout=60)
    assert float(from_tensor(low.embeddings)[0] @ expected[0]) > 0.9
    texts = stub.EmbedTexts(embedding_pb2.EmbedTextsRequest(texts=TEXTS, model="tiny-clap"), timeout=60)
    assert from_tensor(texts.embeddings).shape == (2, expected.shape[1])


def test_clap_collections_hold_audio_searchable_by_audio_and_text(stub):
    items = [embedding_pb2.Item(id=f"tone-{hz}", audio=pcm(tone(hz)), metadata={"hz": str(hz)})
             for hz in (220, 440, 880, 1760)]
    items.append(embedding_pb2.Item(id="words", text="a large red circle"))
    stub.Upsert(embedding_pb2.UpsertRequest(collection="sounds", items=items, model="tiny-clap"), timeout=60)
    hits = stub.Search(embedding_pb2.SearchRequest(collection="sounds", audio=pcm(tone(880)), top_k=2), timeout=60).hits
    assert hits[0].id == "tone-880" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    hits = stub.Search(embedding_pb2.SearchRequest(collection="sounds", text="a large red circle", top_k=1),
                       timeout=60).hits
    assert hits[0].id == "words" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Search(embedding_pb2.SearchRequest(collection="sounds", text="x", top_k=1, model="tiny-clip"),
                    timeout=60)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_clap_refuses_images_and_clip_refuses_audio_naming_the_field(stub):
    picture = common_pb2.Image(data=png(SCENES[0]))
    cases = [
        (lambda: stub.EmbedImages(embedding_pb2.EmbedImagesRequest(images=[picture], model="tiny-clap"), timeout=30),
         "model"),
        (lambda: stub.Upsert(embedding_pb2.UpsertRequest(collection="sounds", items=[
            embedding_pb2.Item(id="p", image=picture)]), timeout=30), "items[0].image"),
        (lambda: stub.EmbedAudio(embedding_pb2.EmbedAudioRequest(audio=[pcm(tone(440))], model="tiny-clip"),
                                 timeout=30), "model"),
        (lambda: stub.EmbedAudio(embedding_pb2.EmbedAudioRequest(audio=[common_pb2.AudioClip()],
                                                                 model="tiny-clap"), timeout=30), "audio[0]"),
    ]
    for call, field in cases:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert caught.value.details().startswith(f"{field}:"), caught.value.details()


@pytest.mark.parametrize("case", sorted(AUDIO_PAST_THE_LIMITS))
def test_clap_audio_past_each_limit_is_refused_from_the_header_naming_the_embedding_setting(stub, case):
    """The embedding service reads audio with the audio service's ClipReader: the same header checks
    before any decoding, each refusal naming the embedding service's own SYN_EMBEDDING_MAX_AUDIO_* setting."""
    make, audio_setting = AUDIO_PAST_THE_LIMITS[case]
    setting = audio_setting.replace("SYN_AUDIO_MAX_", "SYN_EMBEDDING_MAX_AUDIO_")
    with pytest.raises(grpc.RpcError) as caught:
        stub.EmbedAudio(embedding_pb2.EmbedAudioRequest(audio=[common_pb2.AudioClip(encoded=make())],
                                                        model="tiny-clap"), timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
    assert caught.value.details().startswith("audio[0].encoded:"), caught.value.details()
    assert setting in caught.value.details(), caught.value.details()
    # And the service keeps serving.
    assert stub.EmbedAudio(embedding_pb2.EmbedAudioRequest(audio=[pcm(tone(440))], model="tiny-clap"),
                           timeout=60).model == "tiny-clap"
