"""EmbedTexts / EmbedImages / ListModels over gRPC give what the shipped model gives in-process."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest
import torch
from PIL import Image

from models.embedding.checkpoint import load_embedder
from models.images import images_to_batch
from models.shapesworld import EVAL_SEEDS, render_scene
from models.training import read_manifest
from synesthesia.tensors import from_tensor
from synesthesia.v1 import common_pb2, embedding_pb2
from tests.embedding.conftest import embed_texts, image, png

SCENES = [render_scene(seed) for seed in EVAL_SEEDS[40000:40006]]


@pytest.fixture(scope="module")
def model():
    return load_embedder().model


def test_texts_match_the_model_in_process(embedding_stub, model):
    texts = [s.captions[0] for s in SCENES] + ["A Large RED circle!", "words the model never saw"]
    served = embed_texts(embedding_stub, texts)
    with torch.no_grad():
        local = model.encode_texts(texts).numpy()
    assert served.shape == (len(texts), 128)
    np.testing.assert_allclose(served, local, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def test_images_match_the_model_in_process_at_any_size(embedding_stub, model):
    pixels = [s.image for s in SCENES] + [np.asarray(Image.fromarray(SCENES[0].image).resize((128, 96)))]
    reply = embedding_stub.EmbedImages(embedding_pb2.EmbedImagesRequest(images=[image(p) for p in pixels]),
                                       timeout=60)
    served = from_tensor(reply.embeddings)
    with torch.no_grad():
        local = model.encode_images(images_to_batch(pixels, 64)).numpy()
    assert reply.model == "embedding" and served.shape == (len(pixels), 128)
    np.testing.assert_allclose(served, local, atol=1e-5)


def test_the_right_caption_is_nearest_to_each_image(embedding_stub):
    # Six scenes, six captions: each image is closest to its own caption (a loose check of the
    # shared space; the Recall@K tests measure it properly).
    images = from_tensor(embedding_stub.EmbedImages(embedding_pb2.EmbedImagesRequest(
        images=[image(s.image) for s in SCENES]), timeout=60).embeddings)
    texts = embed_texts(embedding_stub, [s.captions[0] for s in SCENES])
    assert ((images @ texts.T).argmax(1) == np.arange(len(SCENES))).mean() >= 5 / 6


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(embedding_stub, model):
    texts = [s.captions[0] for s in SCENES] * 4
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        served = list(pool.map(lambda t: embed_texts(embedding_stub, [t])[0], texts))
    with torch.no_grad():
        local = model.encode_texts(texts).numpy()
    np.testing.assert_allclose(np.stack(served), local, atol=1e-5)


def test_the_largest_request_is_served(embedding_stub):
    reply = embedding_stub.EmbedImages(embedding_pb2.EmbedImagesRequest(
        images=[common_pb2.Image(data=png(SCENES[i % 6].image)) for i in range(256)]), timeout=120)
    assert from_tensor(reply.embeddings).shape == (256, 128)
    assert embed_texts(embedding_stub, ["x" * 512] * 256).shape == (256, 128)


def test_list_models_describes_the_shipped_checkpoint(embedding_stub):
    (info,) = embedding_stub.ListModels(embedding_pb2.ListEmbeddingModelsRequest(), timeout=30).models
    entry = read_manifest()["embedding"]
    assert info.name == "embedding" and info.is_default and info.task == "image-text-embedding"
    assert info.family == "builtin" and info.source.endswith("embedding.safetensors")
    assert info.backend == common_pb2.MODEL_BACKEND_BUILTIN and info.weights_sha256 == entry["sha256"]
    assert info.parameter_count == entry["parameter_count"]
    assert info.metrics["t2i_recall@1"] == pytest.approx(entry["metrics"]["t2i_recall@1"])
    assert info.device in ("cpu", "cuda:0")
