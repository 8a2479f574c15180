"""Beam search on the shipped checkpoint: greedy by hand, batching independence, limits, scores, settling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.captioning.checkpoint import load_captioner
from models.images import images_to_batch
from models.captioning.decoding import beam_search
from models.shapesworld import EVAL_SEEDS, render_scene

SCENES = [render_scene(seed) for seed in EVAL_SEEDS[5000:5006]]


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_captioner().model


@pytest.fixture(scope="module")
def images(model):
    return images_to_batch([s.image for s in SCENES], model.config.image_size)


def test_beam_one_is_greedy(model, images):
    decoded = beam_search(model, images, [1] * len(SCENES), [20] * len(SCENES))
    with torch.no_grad():
        state = model.start(model.encode(images))
        previous = torch.full((len(SCENES),), model.vocab.start)
        words = [[] for _ in SCENES]
        live = [True] * len(SCENES)
        for _ in range(21):
            out = model.step(state, previous)
            state, previous = out.state, out.log_probs.argmax(-1)
            for b, token in enumerate(previous.tolist()):
                if live[b]:
                    if token == model.vocab.end:
                        live[b] = False
                    else:
                        words[b].append(model.vocab.tokens[token])
    assert [d.text for d in decoded] == [" ".join(w) for w in words]


def test_each_image_decodes_as_if_alone(model, images):
    beams, limits = [1, 3, 10, 2, 5, 3], [20, 20, 20, 3, 20, 50]
    together = beam_search(model, images, beams, limits)
    for i in range(len(SCENES)):
        alone = beam_search(model, images[i:i + 1], [beams[i]], [limits[i]])[0]
        assert together[i].text == alone.text
        assert together[i].log_prob == pytest.approx(alone.log_prob, abs=1e-4)


def test_length_limit_and_log_probabilities(model, images):
    for caption in beam_search(model, images, [3] * len(SCENES), [2] * len(SCENES)):
        assert 1 <= len(caption.words) <= 2
    for caption in beam_search(model, images, [4] * len(SCENES), [20] * len(SCENES)):
        assert caption.log_prob == pytest.approx(sum(w.log_prob for w in caption.words) + caption.end_log_prob)
        assert caption.log_prob < 0 and all(w.log_prob <= 0 for w in caption.words)
        assert caption.score == pytest.approx(caption.log_prob / (len(caption.words) + 1), abs=1e-5)
        for word in caption.words:
            assert word.attention.shape == model.grid_shape
            assert word.attention.sum() == pytest.approx(1.0, abs=1e-4)
            assert (word.attention >= 0).all()


def test_log_probability_matches_teacher_forcing(model, images):
    captions = beam_search(model, images, [3] * len(SCENES), [20] * len(SCENES))
    for i, caption in enumerate(captions):
        ids = torch.tensor([model.vocab.encode(caption.text)])
        with torch.no_grad():
            logits, alphas = model(images[i:i + 1], ids)
        lp = logits.log_softmax(-1)[0].gather(1, ids[0, 1:, None]).squeeze(1)
        assert float(lp.sum()) == pytest.approx(caption.log_prob, abs=1e-3)
        np.testing.assert_allclose(alphas[0, :-1].reshape(-1, *model.grid_shape).numpy(),
                                   np.stack([w.attention for w in caption.words]), atol=1e-5)


@pytest.mark.parametrize("beam", [1, 3, 10])
def test_settled_words_are_the_caption(model, images, beam):
    streamed = [[] for _ in SCENES]
    captions = beam_search(model, images, [beam] * len(SCENES), [20] * len(SCENES),
                           on_settled=lambda b, words: streamed[b].extend(words))
    for caption, words in zip(captions, streamed):
        assert [w.text for w in words] == [w.text for w in caption.words]
        for a, b in zip(words, caption.words):
            assert a.log_prob == pytest.approx(b.log_prob)
            np.testing.assert_allclose(a.attention, b.attention)


def test_rejects_bad_arguments(model, images):
    with pytest.raises(ValueError):
        beam_search(model, images[:1], [11], [20])
    with pytest.raises(ValueError):
        beam_search(model, images[:1], [0], [20])
    with pytest.raises(ValueError):
        beam_search(model, images[:1], [3], [0])
    with pytest.raises(ValueError):
        beam_search(model, images[:2], [3], [20])
