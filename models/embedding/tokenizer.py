"""The text encoder's tokenizer: lower-cased words, ids from a fixed word list stored in the checkpoint.

Punctuation and digits separate words and are dropped, so "A Red circle!" and
"a red circle" get the same ids; a word outside the list becomes <unk> rather
than an error, because the service embeds any text a user sends.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch

PAD, UNK = "<pad>", "<unk>"
SPECIALS: tuple[str, ...] = (PAD, UNK)
_WORD = re.compile(r"[a-z]+")


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class WordTokenizer:
    """Word <-> id with <pad>=0 and <unk>=1; sequences are cut at `max_words`."""

    def __init__(self, vocabulary: Sequence[str], max_words: int = 32) -> None:
        tokens = tuple(vocabulary)
        if tokens[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}, got {tokens[:2]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("duplicate tokens in vocabulary")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}
        self.pad, self.unk = self.index[PAD], self.index[UNK]
        self.max_words = max_words

    @classmethod
    def from_words(cls, words: Iterable[str], max_words: int = 32) -> "WordTokenizer":
        return cls(SPECIALS + tuple(sorted(set(words) - set(SPECIALS))), max_words)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Ids of the words of `text`; a text with no word at all is a single <unk>."""
        ids = [self.index.get(w, self.unk) for w in words_of(text)][: self.max_words]
        return ids or [self.unk]

    def batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids [B, T] padded with <pad>, lengths [B])."""
        encoded = [self.encode(t) for t in texts]
        lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)
        ids = torch.full((len(encoded), int(lengths.max()) if encoded else 1), self.pad, dtype=torch.long)
        for row, seq in zip(ids, encoded):
            row[: len(seq)] = torch.tensor(seq, dtype=torch.long)
        return ids, lengths
