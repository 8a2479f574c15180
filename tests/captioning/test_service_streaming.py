"""StreamCaption yields the unary caption's words, in order, with the last message final."""

from __future__ import annotations

import numpy as np
import pytest

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.tensors import from_tensor
from synesthesia.v1 import captioning_pb2
from tests.captioning.conftest import caption_request, encode, stream_request

SCENES = [render_scene(seed) for seed in EVAL_SEEDS[30000:30004]]


@pytest.mark.parametrize("beam", [1, 3, 10])
def test_stream_equals_unary(captioning_stub, beam):
    for scene in SCENES:
        data = encode(scene.image)
        unary = captioning_stub.Caption(caption_request(data, beam, attention=True), timeout=60)
        messages = list(captioning_stub.StreamCaption(stream_request(data, beam, attention=True), timeout=60))
        assert [m.word.text for m in messages] == [w.text for w in unary.words]
        assert " ".join(m.word.text for m in messages) == unary.caption
        assert [m.index for m in messages] == list(range(len(messages)))
        assert [m.is_final for m in messages] == [False] * (len(messages) - 1) + [True]
        for m, w in zip(messages, unary.words):
            assert m.word.log_probability == pytest.approx(w.log_probability, abs=1e-5)
            np.testing.assert_allclose(from_tensor(m.word.attention.values), from_tensor(w.attention.values),
                                       atol=1e-6)


def test_stream_respects_length_limit(captioning_stub):
    data = encode(SCENES[0].image)
    messages = list(captioning_stub.StreamCaption(stream_request(data, beam_size=3, max_length=2), timeout=60))
    unary = captioning_stub.Caption(caption_request(data, beam_size=3, max_length=2), timeout=60)
    assert 1 <= len(messages) <= 2
    assert [m.word.text for m in messages] == [w.text for w in unary.words]
    assert all(not m.word.HasField("attention") for m in messages)  # not asked for


def test_stream_messages_are_stream_responses(captioning_stub):
    first = next(iter(captioning_stub.StreamCaption(stream_request(encode(SCENES[1].image)), timeout=60)))
    assert isinstance(first, captioning_pb2.StreamCaptionResponse) and first.index == 0 and first.word.text
