"""Concurrent callers each get their own caption: 16 different images at once, each compared with
its sequential answer."""

from __future__ import annotations

import concurrent.futures

import pytest

from models.shapesworld import EVAL_SEEDS, render_scene
from tests.captioning.conftest import caption_request, encode, stream_request

SCENES = [render_scene(seed) for seed in EVAL_SEEDS[33000:33016]]


@pytest.mark.parametrize("beam", [1, 3])
def test_concurrent_calls_get_their_own_captions(captioning_stub, beam):
    requests = [caption_request(encode(s.image), beam, attention=True) for s in SCENES]
    sequential = [captioning_stub.Caption(r, timeout=60) for r in requests]
    assert len({r.caption for r in sequential}) >= 12  # the images really differ
    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        for _ in range(2):
            concurrent_answers = list(pool.map(lambda r: captioning_stub.Caption(r, timeout=60), requests))
            for seq, con in zip(sequential, concurrent_answers):
                assert con.caption == seq.caption
                assert con.log_probability == pytest.approx(seq.log_probability, abs=1e-3)


def test_concurrent_streams_and_unary_mixed(captioning_stub):
    expected = [captioning_stub.Caption(caption_request(encode(s.image), 3), timeout=60).caption for s in SCENES]

    def run(i):
        data = encode(SCENES[i].image)
        if i % 2:
            return " ".join(m.word.text for m in captioning_stub.StreamCaption(stream_request(data, 3), timeout=60))
        return captioning_stub.Caption(caption_request(data, 3), timeout=60).caption

    with concurrent.futures.ThreadPoolExecutor(len(SCENES)) as pool:
        assert list(pool.map(run, range(len(SCENES)))) == expected
