"""How captions are scored against ShapesWorld scenes: BLEU, attribute accuracy, the pointing game.

Shared by `evaluate.py` (in-process) and the service tests (over gRPC), so both
report the same numbers for the same captions.

* BLEU-1..4: corpus BLEU (Papineni et al., 2002) against every reference caption of
  each scene, clipped n-gram counts, uniform weights, brevity penalty from the
  reference length closest to each hypothesis (ties: the shorter), no smoothing.
* Attribute accuracy: the caption names as many objects as the scene holds, each
  scene object's colour and shape appear in one noun phrase, and for two objects
  the relation is right (either order: "A left of B" or "B right of A"). Sizes and
  the single-object position phrase are scored separately (`size_accuracy`,
  `position_accuracy`) and together in `exact_match` (the caption is a reference).
* Pointing game: for each colour or shape word whose noun phrase names a scene
  object, the attention map's argmax grid cell is a hit when
  - `overlap`: the cell's pixel rectangle overlaps that object's mask, or
  - `centre`: the cell's centre pixel (the argmax upsampled to pixels) lies in the mask.
  Chance rates: the share of cells that would hit, i.e. for `centre` about the
  object's mask area share.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.shapesworld import COLOUR_NAMES, POSITIONS, RELATIONS, SHAPES, SIZES, position_phrase, relation

# --- BLEU ------------------------------------------------------------------------------------------


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> list[float]:
    """[BLEU-1, ..., BLEU-max_n] of whitespace-tokenised hypotheses against their reference lists."""
    if len(hypotheses) != len(references):
        raise ValueError("one reference list per hypothesis")
    matches, totals = [0] * max_n, [0] * max_n
    hyp_length = ref_length = 0
    for hypothesis, refs in zip(hypotheses, references):
        hyp = hypothesis.split()
        ref_words = [r.split() for r in refs]
        hyp_length += len(hyp)
        ref_length += min((abs(len(r) - len(hyp)), len(r)) for r in ref_words)[1]
        for n in range(1, max_n + 1):
            counts = _ngrams(hyp, n)
            most: Counter = Counter()
            for r in ref_words:
                most |= _ngrams(r, n)
            matches[n - 1] += sum(min(c, most[g]) for g, c in counts.items())
            totals[n - 1] += max(0, len(hyp) - n + 1)
    if hyp_length == 0:
        return [0.0] * max_n
    brevity = 1.0 if hyp_length > ref_length else math.exp(1.0 - ref_length / hyp_length)
    scores, log_sum = [], 0.0
    for n in range(max_n):
        if matches[n] == 0 or totals[n] == 0:
            scores.extend([0.0] * (max_n - n))
            break
        log_sum += math.log(matches[n] / totals[n])
        scores.append(brevity * math.exp(log_sum / (n + 1)))
    return scores


# --- Parsing ---------------------------------------------------------------------------------------


@dataclass
class NounPhrase:
    size: str | None
    colour: str
    shape: str
    colour_index: int  # word positions in the caption
    shape_index: int


@dataclass
class ParsedCaption:
    phrases: list[NounPhrase]
    relation: str | None = None  # two objects
    position: str | None = None  # one object, when the caption has a position phrase


def _noun_phrase(words: list[str], i: int) -> tuple[NounPhrase, int] | None:
    if i >= len(words) or words[i] != "a":
        return None
    i += 1
    size = None
    if i < len(words) and words[i] in SIZES:
        size, i = words[i], i + 1
    if i + 1 < len(words) and words[i] in COLOUR_NAMES and words[i + 1] in SHAPES:
        return NounPhrase(size, words[i], words[i + 1], i, i + 1), i + 2
    return None


def parse_caption(caption: str) -> ParsedCaption | None:
    """The objects, relation and position a caption states; None when it is not ShapesWorld grammar."""
    words = caption.split()
    first = _noun_phrase(words, 0)
    if first is None:
        return None
    phrase, i = first
    rest = " ".join(words[i:])
    if not rest:
        return ParsedCaption([phrase])
    if rest in POSITIONS:
        return ParsedCaption([phrase], position=rest)
    for rel in RELATIONS:
        if rest.startswith(rel + " "):
            second = _noun_phrase(words, i + len(rel.split()))
            if second is not None and second[1] == len(words):
                return ParsedCaption([phrase, second[0]], relation=rel)
    return None


# --- Scene facts -----------------------------------------------------------------------------------


@dataclass
class SceneFacts:
    """What scoring needs of a scene: its objects (shape, colour, size, centre, mask), canvas size, references."""

    objects: list[dict]
    size: int
    references: list[str]

    @classmethod
    def from_scene(cls, scene) -> "SceneFacts":
        objects = [{"shape": o.shape, "colour": o.colour, "size": o.size, "centre": tuple(o.centre), "mask": o.mask}
                   for o in scene.objects]
        return cls(objects, scene.size, list(scene.captions))

    def find(self, phrase: NounPhrase) -> int | None:
        for i, o in enumerate(self.objects):
            if (o["colour"], o["shape"]) == (phrase.colour, phrase.shape):
                return i
        return None


@dataclass
class CaptionJudgement:
    attributes_right: bool
    sizes_right: bool
    position_right: bool | None  # None: not a one-object caption with a position phrase
    exact: bool


def judge_caption(caption: str, facts: SceneFacts) -> CaptionJudgement:
    parsed = parse_caption(caption)
    exact = caption in facts.references
    if parsed is None or len(parsed.phrases) != len(facts.objects):
        return CaptionJudgement(False, False, None, exact)
    matched = [facts.find(p) for p in parsed.phrases]
    attributes = None not in matched and len(set(matched)) == len(matched)
    if attributes and parsed.relation is not None:
        a, b = (facts.objects[m]["centre"] for m in matched)
        attributes = relation(a, b) == parsed.relation
    sizes = attributes and all(p.size == facts.objects[m]["size"] for p, m in zip(parsed.phrases, matched))
    position = None
    if parsed.position is not None:
        position = attributes and parsed.position == position_phrase(facts.objects[0]["centre"], facts.size)
    return CaptionJudgement(attributes, sizes, position, exact)


# --- Pointing game ---------------------------------------------------------------------------------


def cell_bounds(gy: int, gx: int, grid: tuple[int, int], height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel rectangle (y0, y1, x0, x1) of grid cell (gy, gx) on a height x width image."""
    gh, gw = grid
    return (math.floor(gy * height / gh), math.ceil((gy + 1) * height / gh),
            math.floor(gx * width / gw), math.ceil((gx + 1) * width / gw))


def cell_hits(mask: np.ndarray, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Boolean [gh, gw] maps: cells overlapping `mask`, and cells whose centre pixel is in `mask`."""
    height, width = mask.shape
    gh, gw = grid
    overlap = np.zeros(grid, dtype=bool)
    centre = np.zeros(grid, dtype=bool)
    for gy in range(gh):
        for gx in range(gw):
            y0, y1, x0, x1 = cell_bounds(gy, gx, grid, height, width)
            overlap[gy, gx] = mask[y0:y1, x0:x1].any()
            cy, cx = int((gy + 0.5) * height / gh), int((gx + 0.5) * width / gw)
            centre[gy, gx] = mask[min(cy, height - 1), min(cx, width - 1)]
    return overlap, centre


@dataclass
class PointingTally:
    words: int = 0
    overlap_hits: int = 0
    centre_hits: int = 0
    overlap_chance: float = 0.0  # summed over words; divide by `words`
    centre_chance: float = 0.0
    area_share: float = 0.0

    def add(self, attention: np.ndarray, mask: np.ndarray) -> None:
        overlap, centre = cell_hits(mask, attention.shape)
        gy, gx = np.unravel_index(int(np.argmax(attention)), attention.shape)
        self.words += 1
        self.overlap_hits += int(overlap[gy, gx])
        self.centre_hits += int(centre[gy, gx])
        self.overlap_chance += float(overlap.mean())
        self.centre_chance += float(centre.mean())
        self.area_share += float(mask.mean())

    def add_caption(self, caption_words: Sequence[str], attentions: Sequence[np.ndarray], facts: SceneFacts) -> None:
        """Score the colour and shape words of each noun phrase that names a scene object."""
        parsed = parse_caption(" ".join(caption_words))
        if parsed is None:
            return
        for phrase in parsed.phrases:
            found = facts.find(phrase)
            if found is None:
                continue
            for index in (phrase.colour_index, phrase.shape_index):
                self.add(np.asarray(attentions[index]), facts.objects[found]["mask"])

    def summary(self) -> dict[str, float]:
        n = max(self.words, 1)
        return {
            "pointing_overlap": self.overlap_hits / n, "pointing_centre": self.centre_hits / n,
            "pointing_overlap_chance": self.overlap_chance / n, "pointing_centre_chance": self.centre_chance / n,
            "pointing_mask_area_share": self.area_share / n, "pointing_words": float(self.words),
        }


# --- Everything at once ----------------------------------------------------------------------------


def score_captions(captions: Sequence[str], facts: Sequence[SceneFacts]) -> dict[str, float]:
    """BLEU and accuracies of `captions` (one per scene)."""
    bleu = corpus_bleu(captions, [f.references for f in facts])
    out = {f"bleu_{n + 1}": b for n, b in enumerate(bleu)}
    judgements = [judge_caption(c, f) for c, f in zip(captions, facts)]
    for label, count in (("one_object", 1), ("two_objects", 2)):
        chosen = [j for j, f in zip(judgements, facts) if len(f.objects) == count]
        if chosen:
            out[f"attribute_accuracy_{label}"] = float(np.mean([j.attributes_right for j in chosen]))
            out[f"scenes_{label}"] = float(len(chosen))
    out["attribute_accuracy"] = float(np.mean([j.attributes_right for j in judgements]))
    out["size_accuracy"] = float(np.mean([j.sizes_right for j in judgements]))
    positioned = [j.position_right for j in judgements if j.position_right is not None]
    if positioned:
        out["position_accuracy"] = float(np.mean(positioned))
    out["exact_match"] = float(np.mean([j.exact for j in judgements]))
    return out
