"""The caption encoder of the text-to-image GAN: words -> one fixed vector.

Reed et al. (2016) pretrain a char-CNN-RNN jointly with image features; on
ShapesWorld the captions come from a closed vocabulary and a fixed grammar, so
a word-level GRU pretrained to predict what the caption says (shape, colour,
size, position) gives an embedding whose geometry already separates every
attribute the generator must honour. It is trained first and then frozen, so
the GAN never has to chase a moving text representation.
"""

from __future__ import annotations

import re

import torch
from torch import nn

PAD, UNKNOWN = "<pad>", "<unk>"
_WORD = re.compile(r"[^\W_]+")

# Attribute heads used for pretraining. A caption that does not state an
# attribute (sizes and position phrases are optional) gets IGNORE for it.
IGNORE = -100


def split_words(text: str) -> list[str]:
    """Lower-cased words; punctuation and extra spaces are not words."""
    return _WORD.findall(text.lower())


class Tokenizer:
    """Maps words to ids over a closed vocabulary; id 0 pads, id 1 is unknown."""

    def __init__(self, vocabulary: list[str] | tuple[str, ...]) -> None:
        words = [w for w in vocabulary if w not in (PAD, UNKNOWN)]
        self.words = [PAD, UNKNOWN, *sorted(set(words))]
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> tuple[list[int], list[str]]:
        """(ids of the known words, unknown words in order); unknown words are dropped."""
        ids, unknown = [], []
        for word in split_words(text):
            if word in self.index:
                ids.append(self.index[word])
            else:
                unknown.append(word)
        return ids, unknown

    def batch(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids [N, T] and lengths [N] (an empty sequence counts as one pad)."""
        longest = max(1, *(len(s) for s in sequences)) if sequences else 1
        ids = torch.zeros(len(sequences), longest, dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        lengths = torch.tensor([max(1, len(s)) for s in sequences], dtype=torch.long)
        return ids, lengths


class TextEncoder(nn.Module):
    """Word embeddings -> bidirectional GRU -> mean of the states over the words -> `text_dim`.

    Mean pooling (instead of the last state) keeps a word's contribution the
    same wherever it sits, which suits captions whose optional phrases shift
    the positions of the attribute words.
    """

    def __init__(self, vocab_size: int, word_dim: int, text_dim: int, attribute_classes: dict[str, int]) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.gru = nn.GRU(word_dim, text_dim // 2, batch_first=True, bidirectional=True)
        self.project = nn.Linear(text_dim, text_dim)
        # Only used for pretraining; the GAN sees `forward`'s embedding.
        self.heads = nn.ModuleDict({name: nn.Linear(text_dim, n) for name, n in attribute_classes.items()})

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # Packing keeps the backward direction from reading pads, so a caption's
        # embedding does not depend on the longest caption in its batch.
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        states, _ = nn.utils.rnn.pad_packed_sequence(
            self.gru(packed)[0], batch_first=True, total_length=ids.shape[1]
        )
        mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None].to(ids.device))
        mask = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return torch.tanh(self.project(pooled))

    def attribute_logits(self, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(embedding) for name, head in self.heads.items()}
