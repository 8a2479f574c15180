"""What every Hugging Face captioning family shares: generate, then score the chosen sequence.

Decoding: `generate` with the request's beam width and `max_new_tokens` = its word
limit (tokens, for a sub-word tokenizer), grouped by (beam, limit). The chosen
sequences are then run once more with teacher forcing (the family's `_forward`)
to read off each token's log-probability and its attention from text to image
patches (mean over layers and heads; the image encoder's extra tokens dropped and
the rest reshaped to the patch grid, renormalised to sum to 1). The grid comes
from the length of the attended image sequence and the input's shape: ViT and
BLIP have one extra token ([CLS]), DeiT two ([CLS] + distillation), Swin/Donut
none (its last stage's grid). Tokens are merged into whitespace-separated words: a
word's log-probability is the sum of its tokens', its attention their mean. When
the attended sequence is no patch grid, or the family has no such attention,
attention is left empty (`attention_note` says why).

Transformers families decode first and then stream (`on_settled` is not called).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.captioning.decoding import DecodedCaption, DecodedWord
from models.hf import image_processor, parameter_count, weights_fingerprint
from models.repository import ModelDetails, ModelEntry


def patch_grid(length: int, height: int, width: int) -> tuple[int, int, int] | None:
    """(leading extra tokens, grid rows, grid columns) of an encoder sequence of `length` over a
    height x width input: ViT adds one [CLS], DeiT two ([CLS] + distillation), Swin/Donut none.
    Read from the sequence itself, so every encoder's grid comes from its own output."""
    ratio = height / width
    for extra in (0, 1, 2):
        cells = length - extra
        if cells <= 0:
            continue
        columns = max(1, round(math.sqrt(cells / ratio)))
        rows = cells // columns
        if rows * columns == cells and abs(rows / columns - ratio) <= 0.25 * ratio:
            return extra, rows, columns
    return None


class TransformersCaptioner:
    """The shared part of every HF captioning family. A family sets `model`, `tokenizer`, `eos_id`
    and implements `_generate(pixels, beams, limit) -> sequences` and
    `_forward(pixels, sequences) -> (logits for sequences[:, 1:], attentions or None)`."""

    attention_note = ""

    def __init__(self, entry: ModelEntry, device, model, tokenizer, family: str, architecture: str,
                 default_size) -> None:
        self.directory = Path(entry.path)
        self.device = torch.device(device)
        self.model = model
        self.tokenizer = tokenizer
        self.processor = image_processor(self.directory)
        size = entry.option("image_size", default_size)
        # Donut/Swin configs give [height, width]; ViT, DeiT and BLIP one side.
        self.image_size = tuple(int(s) for s in size) if isinstance(size, (list, tuple)) else (int(size), int(size))
        self.mean = entry.option("mean", [0.5, 0.5, 0.5])
        self.std = entry.option("std", [0.5, 0.5, 0.5])
        self.special_ids = set(tokenizer.all_special_ids)
        self.eos_id = None
        self.details = ModelDetails(family, str(self.directory), parameter_count=parameter_count(model),
                                    fingerprint=weights_fingerprint(self.directory), architecture=architecture)

    def input_warnings(self, image: Image.Image) -> list[str]:
        return []  # a model trained on real pictures has no narrower world to flag

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> pixel values [3, H, W] for the image encoder."""
        if self.processor is not None:
            return self.processor(images=image, return_tensors="pt")["pixel_values"][0]
        return resize_normalise(image, self.image_size, self.mean, self.std)

    @torch.no_grad()
    def caption(self, pixel_values: torch.Tensor, beam_sizes: list[int], max_lengths: list[int],
                on_settled=None) -> list[DecodedCaption]:
        results: list[DecodedCaption | None] = [None] * len(beam_sizes)
        for (beams, limit), rows in group_rows(beam_sizes, max_lengths).items():
            pv = pixel_values[rows].to(self.device)
            sequences = self._generate(pv, beams, limit)
            for row, caption in zip(rows, self._score(pv, sequences)):
                results[row] = caption
        return results  # type: ignore[return-value]

    def _score(self, pixel_values: torch.Tensor, sequences: torch.Tensor) -> list[DecodedCaption]:
        logits, attentions = self._forward(pixel_values, sequences)
        log_probs = logits.float().log_softmax(-1)
        targets = sequences[:, 1:]
        token_lp = log_probs.gather(2, targets[..., None]).squeeze(-1).cpu().numpy()
        attention, grid = cross_attention_maps(attentions, pixel_values.shape[-2:])
        return decoded_captions(self.tokenizer, targets, token_lp, attention, grid, {self.eos_id}, self.special_ids)

    def _generate(self, pixel_values: torch.Tensor, beams: int, limit: int) -> torch.Tensor:
        raise NotImplementedError

    def _forward(self, pixel_values: torch.Tensor, sequences: torch.Tensor):
        raise NotImplementedError


def group_rows(beam_sizes: list[int], max_lengths: list[int]) -> dict[tuple[int, int], list[int]]:
    """The batch's rows by (beam width, length limit): one `generate` call per group."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(zip(beam_sizes, max_lengths)):
        groups.setdefault(key, []).append(i)
    return groups


def decoded_captions(tokenizer, targets: torch.Tensor, token_lp: np.ndarray, attention: np.ndarray | None,
                     grid: tuple[int, int] | None, eos_ids: set, special_ids: set) -> list[DecodedCaption]:
    """Each row of generated `targets` ([B, T] token ids, `token_lp` their log-probabilities and `attention`
    their [B, T, cells] maps) up to its end token, as words; special tokens are skipped."""
    captions = []
    for b, ids in enumerate(targets.cpu().tolist()):
        tokens, lps, maps, end_lp = [], [], [], 0.0
        for j, token in enumerate(ids):
            if token in eos_ids:
                end_lp = float(token_lp[b, j])
                break
            if token in special_ids:
                continue
            tokens.append(token)
            lps.append(float(token_lp[b, j]))
            maps.append(attention[b, j] if attention is not None else None)
        words = words_of(tokenizer, tokens, lps, maps, grid)
        score = (sum(w.log_prob for w in words) + end_lp) / max(1, len(tokens) + 1)
        captions.append(DecodedCaption(words, end_lp, score))
    return captions


def cross_attention_maps(attentions, size) -> tuple[np.ndarray | None, tuple[int, int] | None]:
    """Per-token maps over the image patches from text-to-image attention weights (a tuple over
    layers of [B, heads, T, S]): the mean over layers and heads, the encoder's extra tokens
    dropped, renormalised to sum to 1. None when there are none or S is not a patch grid."""
    if not attentions:
        return None, None
    mean = torch.stack([a.float() for a in attentions]).mean((0, 2))  # [B, T, S]
    found = patch_grid(mean.shape[-1], int(size[0]), int(size[1]))
    if found is None:
        return None, None
    extra, rows, columns = found
    mean = mean[..., extra:]
    return (mean / mean.sum(-1, keepdim=True).clamp_min(1e-12)).cpu().numpy(), (rows, columns)


def resize_normalise(image: Image.Image, size: tuple[int, int], mean, std) -> torch.Tensor:
    """A PIL image -> [3, H, W] float, resized to (height, width) and normalised per channel."""
    resized = image.resize((size[1], size[0]), Image.BICUBIC)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (pixels - torch.tensor(mean, dtype=torch.float32)[:, None, None]) / torch.tensor(std, dtype=torch.float32)[:, None, None]


def token_owners(tokenizer, tokens: list[int]) -> tuple[str, list[tuple[int, int]], list[int]]:
    """(decoded text, character span of each whitespace-separated word, the word each token belongs to)."""
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    spans, owner = [], []  # word character spans; word index of each token
    position = 0
    for word in text.split():
        start = text.index(word, position)
        spans.append((start, start + len(word)))
        position = start + len(word)
    previous_length = 0
    for j in range(len(tokens)):
        length = len(tokenizer.decode(tokens[: j + 1], skip_special_tokens=True))
        # The token's new characters; the word holding its first non-space character owns it.
        index = next((w for w, (s, e) in enumerate(spans) if s < length and e > previous_length), None)
        owner.append(index)
        previous_length = length
    for j in range(len(owner)):  # whitespace-only tokens join the word before (or after) them
        if owner[j] is None:
            owner[j] = next((o for o in owner[j::-1] if o is not None), None)
        if owner[j] is None:
            owner[j] = next((o for o in owner[j:] if o is not None), 0)
    return text, spans, owner


def words_of(tokenizer, tokens: list[int], lps: list[float], maps: list,
             grid: tuple[int, int] | None) -> list[DecodedWord]:
    """Merge tokens into the whitespace-separated words of their decoded text."""
    text, spans, owner = token_owners(tokenizer, tokens)
    words = []
    for w, (s, e) in enumerate(spans):
        mine = [j for j, o in enumerate(owner) if o == w]
        log_prob = float(sum(lps[j] for j in mine))
        heat = np.zeros(0, dtype=np.float32)
        found = [maps[j] for j in mine if maps[j] is not None]
        if found:
            mean = np.mean(found, 0)
            heat = (mean / mean.sum()).reshape(grid).astype(np.float32)
        words.append(DecodedWord(text[s:e], log_prob if mine else 0.0, heat))
    if not math.isfinite(sum(w.log_prob for w in words)):
        raise RuntimeError("non-finite log-probability from the transformers model")
    return words
