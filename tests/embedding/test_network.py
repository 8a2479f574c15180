"""The network pieces: tokenizer, encoders, the masked contrastive loss, the checkpoint, the smoke run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.embedding.checkpoint import load_embedder
from models.embedding.data import describes, render_pairs, training_captions
from models.embedding.network import EmbeddingConfig, JointEmbedding, contrastive_loss
from models.embedding.tokenizer import SPECIALS, WordTokenizer
from models.shapesworld import TRAIN_SEEDS, VOCABULARY
from models.training import CheckpointError, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
VOCAB = SPECIALS + VOCABULARY


def test_tokenizer_lowercases_splits_and_maps_unknown_words_to_unk():
    tok = WordTokenizer(VOCAB, max_words=6)
    red, circle = tok.index["red"], tok.index["circle"]
    assert tok.encode("A RED circle!") == tok.encode("a red circle") == [tok.index["a"], red, circle]
    assert tok.encode("a crimson circle") == [tok.index["a"], tok.unk, circle]
    assert tok.encode("   ") == [tok.unk] and tok.encode("123 ...") == [tok.unk]
    assert len(tok.encode("a " * 50)) == 6
    ids, lengths = tok.batch(["a red circle", "circle"])
    assert ids.shape == (2, 3) and lengths.tolist() == [3, 1] and ids[1, 1:].tolist() == [tok.pad, tok.pad]
    with pytest.raises(ValueError):
        WordTokenizer(("red", "<pad>", "<unk>"))


def test_embeddings_are_unit_vectors_of_the_configured_dimension():
    model = JointEmbedding(EmbeddingConfig(vocabulary=VOCAB, dim=32)).eval()
    pairs = render_pairs(TRAIN_SEEDS[:4])
    with torch.no_grad():
        images = model.encode_images(pairs.images)
        texts = model.encode_texts(pairs.captions + ["an entirely unknown sentence"])
    assert images.shape == (4, 32) and texts.shape == (5, 32)
    assert torch.allclose(images.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(texts.norm(dim=1), torch.ones(5), atol=1e-5)
    # Padding does not leak into a text's embedding: alone or next to a longer text, the same vector.
    with torch.no_grad():
        alone = model.encode_texts(["a red circle"])
        padded = model.encode_texts(["a red circle", "a large red circle left of a small blue square"])[:1]
    assert torch.allclose(alone, padded, atol=1e-6)


def _loss_of_similarity(similarity: torch.Tensor, mask, vse_weight: float) -> torch.Tensor:
    # With unit images = the identity, image_emb @ text_emb.T is exactly `similarity`.
    return contrastive_loss(torch.eye(len(similarity)), similarity.t(), torch.tensor(10.0), mask, vse_weight)[0]


@pytest.mark.parametrize("vse_weight", [0.0, 1.0])
def test_false_negatives_are_masked_out_of_both_loss_terms(vse_weight):
    torch.manual_seed(0)
    similarity = torch.rand(4, 4) * 2 - 1
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = mask[2, 3] = True  # e.g. scenes 0 and 1 share a caption
    base = _loss_of_similarity(similarity, mask, vse_weight)
    changed = similarity.clone()
    changed[0, 1] = changed[1, 0] = changed[2, 3] = 0.99  # as similar as can be: would dominate if counted
    assert torch.allclose(_loss_of_similarity(changed, mask, vse_weight), base)
    unmasked = _loss_of_similarity(changed, None, vse_weight)
    assert unmasked > base + 0.1
    # ... and gradients: none through a masked entry, some through every other one.
    grad = similarity.clone().requires_grad_(True)
    _loss_of_similarity(grad, mask, vse_weight).backward()
    assert (grad.grad[mask] == 0).all()
    assert (grad.grad.diagonal() < 0).all()  # raising a positive's similarity lowers the loss


def test_a_separated_batch_has_almost_no_loss():
    eye = torch.eye(4)
    _, parts = contrastive_loss(eye, eye, torch.tensor(100.0), None, vse_weight=1.0)
    assert parts["nce"] < 1e-6 and parts["vse"] == 0.0
    # Every other pair masked: no negatives left, so neither term has anything to push.
    everything = ~torch.eye(4, dtype=torch.bool)
    _, parts = contrastive_loss(eye, torch.roll(eye, 1, 0), torch.tensor(10.0), everything, vse_weight=1.0)
    assert parts["nce"] == pytest.approx(0.0, abs=1e-6) and parts["vse"] == 0.0


def test_training_pairs_and_their_false_negative_mask():
    pairs = render_pairs(TRAIN_SEEDS[:64])
    texts = training_captions(pairs.references, np.random.default_rng(0))
    fits = describes(texts, pairs.references)
    assert fits.diagonal().all()  # every scene is described by its own training caption
    for i in range(64):
        for j in range(64):
            assert bool(fits[i, j]) == (texts[j] in pairs.references[i])
    assert fits.sum() > 64  # templated captions do repeat within a batch


def test_shipped_checkpoint_loads_and_refuses_another_config():
    loaded = load_embedder()
    config = loaded.model.config
    assert config.vocabulary == VOCAB and config.dim == 128
    assert loaded.metrics["t2i_recall@1"] >= 0.5 and loaded.metrics["i2t_recall@10"] >= 0.9
    _, entry = load_checkpoint("embedding")
    changed = {**entry["config"], "model": {**entry["config"]["model"], "dim": 64}}
    with pytest.raises(CheckpointError, match="dim"):
        load_checkpoint("embedding", expected_config=changed)


@pytest.mark.slow
def test_smoke_training_writes_a_loadable_checkpoint():
    out = subprocess.run([sys.executable, "-m", "models.embedding.train", "--smoke", "--workers", "0"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env={"OMP_WAIT_POLICY": "PASSIVE",
                                                                           "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    saved = Path(out.stdout.strip().splitlines()[-1].split()[1])
    assert saved.exists()
    loaded = load_embedder(directory=saved.parent)
    assert "t2i_recall@1" in loaded.metrics and loaded.metrics["train_steps"] == 4
