"""The service over loopback captions 200 held-out scenes at the targets, with attention that points.

Held-out scenes (EVAL_SEEDS, both domains, 100 one-object and 100 two-object)
go through the real server as PNG files; the captions and per-word attention that
come back are scored with models/captioning/scoring.py against the scenes' own
references and masks, and against the always-the-most-frequent-caption baseline.
"""

from __future__ import annotations

import concurrent.futures

import pytest

from models.captioning.evaluate import most_frequent_caption
from models.captioning.scoring import PointingTally, SceneFacts, score_captions
from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.tensors import from_tensor
from tests.captioning.conftest import caption_request, encode

pytestmark = pytest.mark.slow
SEEDS = EVAL_SEEDS[20000:20100]
SCENES = [render_scene(s, objects=1) for s in SEEDS] + [render_scene(s, objects=2) for s in SEEDS]


@pytest.fixture(scope="module")
def answers(captioning_stub):
    def one(scene):
        return captioning_stub.Caption(caption_request(encode(scene.image), attention=True), timeout=60)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, SCENES))


def test_caption_quality_beats_targets_and_baseline(answers):
    facts = [SceneFacts.from_scene(s) for s in SCENES]
    ours = score_captions([a.caption for a in answers], facts)
    baseline = score_captions([most_frequent_caption(5000)] * len(SCENES), facts)
    assert {s.domain for s in SCENES} == {"day", "night"}
    assert ours["bleu_4"] >= 0.6, ours
    assert ours["attribute_accuracy_one_object"] >= 0.95, ours
    assert ours["attribute_accuracy_two_objects"] >= 0.8, ours
    assert ours["bleu_4"] > baseline["bleu_4"] + 0.4, (ours, baseline)
    assert ours["attribute_accuracy"] > baseline["attribute_accuracy"] + 0.5, (ours, baseline)


def test_attention_points_at_the_named_object(answers):
    tally = PointingTally()
    for scene, answer in zip(SCENES, answers):
        tally.add_caption([w.text for w in answer.words], [from_tensor(w.attention.values) for w in answer.words],
                          SceneFacts.from_scene(scene))
    summary = tally.summary()
    assert summary["pointing_words"] >= 0.9 * 2 * (100 + 200), summary  # nearly every caption is scored
    assert summary["pointing_overlap"] >= 0.8, summary
    assert summary["pointing_overlap"] > 3 * summary["pointing_overlap_chance"], summary
    assert summary["pointing_centre"] > 3 * summary["pointing_centre_chance"], summary
