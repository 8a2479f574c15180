"""The captioner's word list: built from training captions, stored in the checkpoint's config.

Ids 0..3 are the special tokens; words follow by decreasing training frequency
(ties alphabetical), so the same captions always give the same ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS: tuple[str, ...] = (PAD, START, END, UNK)


class Vocabulary:
    """Word <-> id mapping with <pad>=0, <start>=1, <end>=2, <unk>=3."""

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = tuple(tokens)
        if tokens[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}, got {tokens[:4]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("duplicate tokens in vocabulary")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        self.pad, self.start, self.end, self.unk = (self.index[t] for t in SPECIALS)

    @classmethod
    def build(cls, captions: Iterable[str]) -> "Vocabulary":
        counts = Counter(word for caption in captions for word in caption.split())
        for special in SPECIALS:
            counts.pop(special, None)
        words = sorted(counts, key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(words))

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.tokens == self.tokens

    @property
    def words(self) -> tuple[str, ...]:
        return self.tokens[len(SPECIALS):]

    def encode(self, caption: str) -> list[int]:
        """<start> w1 .. wn <end> as ids; unknown words become <unk>."""
        return [self.start, *(self.index.get(w, self.unk) for w in caption.split()), self.end]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words of `ids`, stopping at <end> and skipping <start>/<pad>."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.end:
                break
            if i in (self.start, self.pad):
                continue
            words.append(self.tokens[i])
        return words
