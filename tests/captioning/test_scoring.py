"""BLEU, caption parsing, attribute judgement and the pointing game, on hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.captioning.scoring import (
    PointingTally, SceneFacts, cell_hits, corpus_bleu, judge_caption, parse_caption, score_captions,
)
from models.shapesworld import reference_captions


def test_bleu_of_a_reference_is_one():
    assert corpus_bleu(["a small red circle on the left"], [["a red circle", "a small red circle on the left"]]) \
        == pytest.approx([1.0, 1.0, 1.0, 1.0])


def test_bleu_hand_worked():
    # unigrams 2/3, bigrams 1/2, no trigram: BLEU-2 = sqrt(2/3 * 1/2), BLEU-3 = BLEU-4 = 0.
    assert corpus_bleu(["a red circle"], [["a red square"]]) == pytest.approx([2 / 3, math.sqrt(1 / 3), 0.0, 0.0])


def test_bleu_brevity_penalty_uses_the_closest_reference():
    # 2 words against references of 3 and 7 words: the closest is 3, BP = exp(1 - 3/2).
    got = corpus_bleu(["a red"], [["a red circle", "a small red circle on the left"]], max_n=2)
    assert got == pytest.approx([math.exp(-0.5), math.exp(-0.5)])


def test_bleu_clips_repeated_words():
    assert corpus_bleu(["a a a"], [["a red circle"]], max_n=1) == pytest.approx([1 / 3])


def test_bleu_is_corpus_level():
    # Pooled counts: 3 + 2 matched unigrams of 3 + 3; not the mean of sentence scores.
    got = corpus_bleu(["a red circle", "a blue x"], [["a red circle"], ["a blue square"]], max_n=1)
    assert got == pytest.approx([5 / 6])


def test_parse_captions():
    one = parse_caption("a large red circle on the left")
    assert [(p.size, p.colour, p.shape) for p in one.phrases] == [("large", "red", "circle")]
    assert one.position == "on the left" and one.relation is None
    assert (one.phrases[0].colour_index, one.phrases[0].shape_index) == (2, 3)
    two = parse_caption("a blue square right of a green cross")
    assert [(p.size, p.colour, p.shape) for p in two.phrases] == [(None, "blue", "square"), (None, "green", "cross")]
    assert two.relation == "right of"
    assert (two.phrases[1].colour_index, two.phrases[1].shape_index) == (6, 7)
    for bad in ["", "a red", "red circle", "a red circle left of", "a red circle on the moon", "a huge red circle"]:
        assert parse_caption(bad) is None, bad


def _facts(*objects) -> SceneFacts:
    objs = [dict(o, mask=np.zeros((64, 64), bool)) for o in objects]
    return SceneFacts(objs, 64, reference_captions(objs, 64))


RED = {"shape": "circle", "colour": "red", "size": "large", "centre": (10.0, 30.0)}
BLUE = {"shape": "square", "colour": "blue", "size": "small", "centre": (50.0, 34.0)}


def test_judge_two_objects_either_order():
    facts = _facts(RED, BLUE)
    for caption in ["a large red circle left of a small blue square", "a blue square right of a red circle"]:
        j = judge_caption(caption, facts)
        assert j.attributes_right, caption
    assert judge_caption("a small blue square right of a large red circle", facts).exact
    assert not judge_caption("a red circle right of a blue square", facts).attributes_right  # relation
    assert not judge_caption("a red square left of a blue circle", facts).attributes_right  # shapes swapped
    assert not judge_caption("a red circle on the left", facts).attributes_right  # one object missing
    assert not judge_caption("a small red circle left of a small blue square", facts).sizes_right


def test_judge_one_object_position_scored_apart():
    facts = _facts(RED)
    assert judge_caption("a large red circle on the left", facts).position_right
    wrong_place = judge_caption("a large red circle on the right", facts)
    assert wrong_place.attributes_right and wrong_place.position_right is False
    assert judge_caption("a red circle", facts).position_right is None


def test_cell_hits_overlap_and_centre():
    mask = np.zeros((64, 64), bool)
    mask[9:12, 9:12] = True  # inside cell (1, 1) = pixels 8..15, not covering its centre (12, 12)
    overlap, centre = cell_hits(mask, (8, 8))
    assert overlap.sum() == 1 and overlap[1, 1]
    assert centre.sum() == 0
    mask[12, 12] = True
    assert cell_hits(mask, (8, 8))[1][1, 1]


def test_pointing_tally_scores_colour_and_shape_words_of_named_objects():
    red_mask = np.zeros((64, 64), bool)
    red_mask[24:36, 4:16] = True  # cells x 0..1, y 3..4
    facts = SceneFacts([dict(RED, mask=red_mask), dict(BLUE, mask=np.zeros((64, 64), bool))], 64, [])
    on_red, elsewhere = np.zeros((8, 8)), np.zeros((8, 8))
    on_red[3, 1] = 1.0
    elsewhere[7, 7] = 1.0
    words = "a large red circle left of a small green square".split()
    maps = [elsewhere] * len(words)
    maps[2] = maps[3] = on_red
    tally = PointingTally()
    tally.add_caption(words, maps, facts)
    # The green square is not in the scene, so only "red" and "circle" count; both hit.
    assert tally.words == 2 and tally.overlap_hits == 2 and tally.centre_hits == 2
    assert tally.summary()["pointing_mask_area_share"] == pytest.approx(red_mask.mean())


def test_score_captions_reports_per_object_count():
    facts = [_facts(RED), _facts(RED, BLUE)]
    scores = score_captions(["a large red circle on the left", "a red circle on the left"], facts)
    assert scores["attribute_accuracy_one_object"] == 1.0
    assert scores["attribute_accuracy_two_objects"] == 0.0
    assert scores["exact_match"] == 0.5
