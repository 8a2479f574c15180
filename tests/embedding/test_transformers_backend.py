"""A transformers CLIPModel from a local directory, served next to the built-in by the same servicer.

The test builds a tiny randomly initialised CLIP (2-layer text and vision towers,
32 px images, 24-dimensional projection) and a word-level tokenizer locally (no
downloads), saves them to tmp_path and starts the service with
SYN_EMBEDDING_HF_DIR pointing there. Served embeddings must equal the same
model's own features computed in-process with transformers directly, and
collections keep the two models' spaces apart.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from models.shapesworld import EVAL_SEEDS, VOCABULARY, render_scene
from synesthesia.tensors import from_tensor
from synesthesia.v1 import common_pb2, embedding_pb2
from tests.embedding.conftest import embed_texts, image, image_item, stub_for, text_item
from tests.runtime.helpers import field_violations

pytestmark = pytest.mark.slow
E = embedding_pb2
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]
SCENES = [render_scene(seed) for seed in EVAL_SEEDS[43000:43004]]


def build_tiny_clip(directory, projection_dim: int = 24) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    words = SPECIAL + list(VOCABULARY)
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # CLIP pools the text at the end-of-text token, so every sequence must end with one.
    core.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>")
    config = CLIPConfig(
        text_config=dict(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=projection_dim)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(directory)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf") / "tiny-clip"
    build_tiny_clip(directory)
    return directory


def in_process(directory, texts: list[str], images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    model = CLIPModel.from_pretrained(directory).eval()
    tokens = AutoTokenizer.from_pretrained(directory)(texts, padding=True, return_tensors="pt")
    pixels = CLIPImageProcessor.from_pretrained(directory)(images=[Image.fromarray(i) for i in images],
                                                           return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        text = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        vision = model.get_image_features(pixel_values=pixels)
    text = text if isinstance(text, torch.Tensor) else text.pooler_output
    vision = vision if isinstance(vision, torch.Tensor) else vision.pooler_output
    return F.normalize(text, dim=-1).numpy(), F.normalize(vision, dim=-1).numpy()


def test_clip_served_next_to_the_builtin(service_process, model_dir, tmp_path):
    server = service_process("embedding", env={"SYN_EMBEDDING_HF_DIR": str(model_dir),
                                               "SYN_EMBEDDING_INDEX_DIR": str(tmp_path / "index")})
    channel, stub = stub_for(server.target)
    with channel:
        models = {m.name: m for m in stub.ListModels(E.ListEmbeddingModelsRequest(), timeout=30).models}
        assert set(models) == {"embedding", "tiny-clip"}
        clip = models["tiny-clip"]
        assert clip.backend == common_pb2.MODEL_BACKEND_TRANSFORMERS and not clip.is_default
        assert models["embedding"].is_default and clip.parameter_count > 10_000

        texts = [s.captions[0] for s in SCENES] + ["A RED circle"]
        pixels = [s.image for s in SCENES] + [np.asarray(Image.fromarray(SCENES[0].image).resize((90, 70)))]
        served_text = embed_texts(stub, texts, model="tiny-clip")
        reply = stub.EmbedImages(E.EmbedImagesRequest(images=[image(p) for p in pixels], model="tiny-clip"),
                                 timeout=60)
        served_images = from_tensor(reply.embeddings)
        expected_text, expected_images = in_process(model_dir, texts, pixels)
        assert reply.model == "tiny-clip" and served_text.shape == (5, 24) and served_images.shape == (5, 24)
        np.testing.assert_allclose(served_text, expected_text, atol=1e-5)
        np.testing.assert_allclose(served_images, expected_images, atol=1e-5)
        # The default is still the built-in.
        assert embed_texts(stub, ["a red circle"]).shape == (1, 128)

        # A CLIP collection: its own dimension and model; search embeds the query with CLIP.
        stub.Upsert(E.UpsertRequest(collection="clip-photos", model="tiny-clip", items=[
            image_item(f"s{i}", s.image) for i, s in enumerate(SCENES)] + [text_item("t", "a red circle")]),
            timeout=60)
        described = stub.GetCollection(E.GetCollectionRequest(collection="clip-photos"), timeout=30)
        assert (described.dimension, described.model, described.size) == (24, "tiny-clip", 5)
        hits = stub.Search(E.SearchRequest(collection="clip-photos", image=image(SCENES[2].image), top_k=2),
                           timeout=30).hits
        assert hits[0].id == "s2" and hits[0].score == pytest.approx(1.0, abs=1e-5)
        hits = stub.Search(E.SearchRequest(collection="clip-photos", text="a red circle", top_k=5), timeout=30).hits
        assert hits[0].id == "t" and len(hits) == 5

        # The two spaces never mix.
        stub.Upsert(E.UpsertRequest(collection="builtin-photos", items=[text_item("a", "a red circle")]), timeout=30)
        for collection, model in (("clip-photos", "embedding"), ("builtin-photos", "tiny-clip")):
            with pytest.raises(grpc.RpcError) as caught:
                stub.Upsert(E.UpsertRequest(collection=collection, model=model, items=[text_item("x", "y")]),
                            timeout=30)
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "model" in [f for f, _ in field_violations(caught.value)]
        assert stub.GetCollection(E.GetCollectionRequest(collection="clip-photos"), timeout=30).size == 5
