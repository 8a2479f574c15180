"""Training data for the captioner: ShapesWorld scenes and the caption each is taught.

A two-object scene has two equally correct canonical captions ("A left of B" and
"B right of A"), and which object ShapesWorld calls A is not visible in the
image. Teaching one of them at random would ask the decoder to guess; so the
taught caption always names the left (horizontal relation) or upper (vertical
relation) object first, i.e. uses "left of" or "above". Both are references, so
BLEU is unaffected; "right of" and "below" stay in the vocabulary (they occur in
the scenes' captions the vocabulary is built from).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.captioning.vocabulary import Vocabulary
from models.shapesworld import INVERSE_RELATION, TRAIN_SEEDS
from models.shapesworld.dataset import render_item

# Relations a taught caption may use, and the ones it rewrites.
_SWAP = {"right of": "left of", "below": "above"}


def taught_caption(caption: str) -> str:
    """The caption the decoder learns for a scene whose canonical caption is `caption`."""
    for relation, inverse in _SWAP.items():
        marker = f" {relation} "
        if marker in caption:
            first, second = caption.split(marker)
            assert INVERSE_RELATION[relation] == inverse
            return f"{second} {inverse} {first}"
    return caption


def build_vocabulary(count: int = 4000) -> Vocabulary:
    """Words of the canonical captions of the first `count` training scenes (no pixels rendered)."""
    captions = [render_item(seed, 64, None, None, ("caption",))["caption"] for seed in TRAIN_SEEDS[:count]]
    return Vocabulary.build(captions)


def encode_batch(captions: Sequence[str], vocab: Vocabulary) -> torch.Tensor:
    """[B, T] ids: <start> words <end>, padded with <pad> to the longest."""
    ids = [vocab.encode(c) for c in captions]
    out = torch.full((len(ids), max(map(len, ids))), vocab.pad, dtype=torch.long)
    for row, seq in zip(out, ids):
        row[: len(seq)] = torch.tensor(seq)
    return out


def render_batch(seeds: Sequence[int], size: int = 64) -> tuple[torch.Tensor, list[str]]:
    """Images [B,3,size,size] in [0,1] and taught captions of scenes `seeds` (mixed object counts, domains)."""
    items = [render_item(int(s), size, None, None, ("image", "caption")) for s in seeds]
    return torch.stack([i["image"] for i in items]), [taught_caption(i["caption"]) for i in items]

