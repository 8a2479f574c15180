"""Greedy and beam-search decoding, batched over images that may each ask for a
different beam width and length limit.

All images' beams advance together as rows of one decoder batch (images x
max beam width); an image with a narrower beam keeps its extra rows at score
-inf. Finished hypotheses are ranked by length-normalised log-probability,
``sum log p / len ** length_penalty`` (len counts the <end> token). An image
stops once it holds `beam_size` finished hypotheses, or when its length limit
forces <end>. Beam width 1 is greedy decoding.

`on_settled(image, words)` (optional) reports words as soon as every live beam and
every finished hypothesis of that image agrees on them: no later step can change
them, so a stream of them equals the final caption's prefix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.captioning.network import Captioner

MAX_BEAM_SIZE = 10


@dataclass
class DecodedWord:
    text: str
    log_prob: float  # natural log p(word | image, previous words)
    attention: np.ndarray  # [grid_h, grid_w], sums to 1


@dataclass
class DecodedCaption:
    words: list[DecodedWord]
    end_log_prob: float  # log p(<end> | ...); 0.0 when the length limit cut the caption
    score: float  # the length-normalised score the beam ranked it by

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def log_prob(self) -> float:
        return sum(w.log_prob for w in self.words) + self.end_log_prob


@dataclass
class _Hypothesis:
    tokens: list[int]
    log_probs: list[float]
    alphas: np.ndarray  # [n, L]
    end_log_prob: float
    score: float


def _common_prefix(sequences: list[list[int]]) -> int:
    if not sequences:
        return 0
    n = min(len(s) for s in sequences)
    for i in range(n):
        if any(s[i] != sequences[0][i] for s in sequences[1:]):
            return i
    return n


@torch.no_grad()
def beam_search(model: Captioner, images: torch.Tensor, beam_sizes: Sequence[int], max_lengths: Sequence[int],
                length_penalty: float = 1.0,
                on_settled: Callable[[int, list[DecodedWord]], None] | None = None) -> list[DecodedCaption]:
    """Captions of `images` ([B,3,S,S] in [0,1], on the model's device); see the module docstring."""
    count = images.shape[0]
    if len(beam_sizes) != count or len(max_lengths) != count:
        raise ValueError("one beam size and one max length per image")
    if any(not 1 <= k <= MAX_BEAM_SIZE for k in beam_sizes):
        raise ValueError(f"beam sizes must be in 1..{MAX_BEAM_SIZE}, got {list(beam_sizes)}")
    if any(n < 1 for n in max_lengths):
        raise ValueError(f"max lengths must be >= 1, got {list(max_lengths)}")
    vocab = model.vocab
    device = images.device
    width = max(beam_sizes)
    grid_h, grid_w = model.grid_shape
    rows = count * width

    features = model.encode(images)
    state = model.start(features.repeat_interleave(width, 0))
    locations = features.shape[1]
    previous = torch.full((rows,), vocab.start, dtype=torch.long, device=device)
    scores = torch.full((count, width), -math.inf, device=device)
    scores[:, 0] = 0.0
    tokens = np.zeros((count, width, 0), dtype=np.int64)
    log_probs = np.zeros((count, width, 0), dtype=np.float64)
    alphas = np.zeros((count, width, 0, locations), dtype=np.float32)
    banned = torch.tensor([vocab.pad, vocab.start, vocab.unk], device=device)
    not_end = torch.ones(len(vocab), dtype=torch.bool, device=device)
    not_end[vocab.end] = False

    finished: list[list[_Hypothesis]] = [[] for _ in range(count)]
    done = [False] * count
    settled = [0] * count

    def words_of(b: int, beam: int, start: int, stop: int) -> list[DecodedWord]:
        return [DecodedWord(vocab.tokens[tokens[b, beam, i]], float(log_probs[b, beam, i]),
                            alphas[b, beam, i].reshape(grid_h, grid_w)) for i in range(start, stop)]

    for step in range(max(max_lengths) + 1):
        out = model.step(state, previous)
        step_lp = out.log_probs.float()
        step_lp[:, banned] = -math.inf
        for b in range(count):
            if step >= max_lengths[b]:  # the limit is reached: only <end> may follow
                step_lp[b * width:(b + 1) * width, not_end] = -math.inf
        vocab_size = step_lp.shape[1]
        candidates = (scores[:, :, None] + step_lp.view(count, width, vocab_size)).view(count, -1)
        top_scores, top_index = candidates.topk(min(2 * width, candidates.shape[1]), dim=1)
        top_scores, top_index = top_scores.cpu().numpy(), top_index.cpu().numpy()
        step_lp_cpu = step_lp.cpu().numpy()
        alpha_cpu = out.alpha.float().cpu().numpy().reshape(count, width, locations)

        source_rows = np.zeros(rows, dtype=np.int64)
        new_scores = np.full((count, width), -math.inf)
        new_words = np.full(rows, vocab.end, dtype=np.int64)
        for b in range(count):
            source_rows[b * width:(b + 1) * width] = b * width  # rows of done images: anything valid
            if done[b]:
                continue
            k = beam_sizes[b]
            live = 0
            for rank, (score, flat) in enumerate(zip(top_scores[b], top_index[b])):
                if not math.isfinite(score):
                    break
                beam, word = divmod(int(flat), vocab_size)
                if word == vocab.end:
                    if rank < k:  # an ended hypothesis counts only if it would have been a top-k beam
                        length = step + 1
                        finished[b].append(_Hypothesis(
                            list(tokens[b, beam]), list(log_probs[b, beam]), alphas[b, beam],
                            float(step_lp_cpu[b * width + beam, word]),
                            float(score) / length ** length_penalty))
                    continue
                row = b * width + live
                source_rows[row] = b * width + beam
                new_words[row] = word
                new_scores[b, live] = score
                live += 1
                if live == k:
                    break
            if len(finished[b]) >= k or step >= max_lengths[b] or live == 0:
                done[b] = True

        # Reorder every beam's history by its parent and append this step's word.
        src = source_rows.reshape(count, width) - (np.arange(count) * width)[:, None]
        gather = np.arange(count)[:, None]
        chosen_lp = step_lp_cpu[source_rows, new_words].reshape(count, width)
        chosen_alpha = alpha_cpu[gather, src]
        tokens = np.concatenate([tokens[gather, src], new_words.reshape(count, width, 1)], 2)
        log_probs = np.concatenate([log_probs[gather, src], chosen_lp[..., None]], 2)
        alphas = np.concatenate([alphas[gather, src], chosen_alpha[:, :, None]], 2)
        scores = torch.as_tensor(new_scores, dtype=torch.float32, device=device)
        state = out.state.select(torch.as_tensor(source_rows, device=device))
        previous = torch.as_tensor(new_words, device=device)

        if on_settled is not None:
            for b in range(count):
                if done[b]:
                    continue
                live_rows = [j for j in range(beam_sizes[b]) if math.isfinite(new_scores[b, j])]
                candidates_seq = [list(tokens[b, j]) for j in live_rows] + [h.tokens for h in finished[b]]
                agreed = _common_prefix(candidates_seq)
                if agreed > settled[b] and live_rows:
                    on_settled(b, words_of(b, live_rows[0], settled[b], agreed))
                    settled[b] = agreed
        if all(done):
            break

    results = []
    for b in range(count):
        best = max(finished[b], key=lambda h: h.score, default=None)
        if best is None:  # cannot happen: the last step forces <end>; kept for safety
            raise RuntimeError("beam search produced no finished hypothesis")
        words = [DecodedWord(vocab.tokens[t], float(lp), a.reshape(grid_h, grid_w))
                 for t, lp, a in zip(best.tokens, best.log_probs, best.alphas)]
        if on_settled is not None and len(words) > settled[b]:
            on_settled(b, words[settled[b]:])
        results.append(DecodedCaption(words, best.end_log_prob, best.score))
    return results


def greedy(model: Captioner, images: torch.Tensor, max_length: int = 20) -> list[DecodedCaption]:
    """Beam width 1."""
    return beam_search(model, images, [1] * images.shape[0], [max_length] * images.shape[0])
