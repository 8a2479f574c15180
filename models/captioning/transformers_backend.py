"""A Hugging Face `VisionEncoderDecoderModel` loaded from a local directory, decoded like the built-in.

The directory holds what `save_pretrained` writes for the model, its tokenizer and
(optionally) its image processor. Nothing is downloaded.

Decoding: `generate` with the request's beam width and `max_new_tokens` = its word
limit (tokens, for a sub-word tokenizer), grouped by (beam, limit). The chosen
sequences are then run once more with teacher forcing to read off each token's
log-probability and cross-attention (mean over layers and heads; the encoder's
[CLS] position is dropped and the rest reshaped to the patch grid, renormalised to
sum to 1). Tokens are merged into whitespace-separated words: a word's
log-probability is the sum of its tokens', its attention their mean. When the
encoder's sequence is not a square patch grid (+ an optional [CLS]), attention
is left empty.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.captioning.decoding import DecodedCaption, DecodedWord


class TransformersCaptioner:
    def __init__(self, directory: str | Path, device: torch.device | str = "cpu") -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

        self.directory = Path(directory)
        self.device = torch.device(device)
        # Eager attention: the fused kernels do not return attention weights.
        self.model = VisionEncoderDecoderModel.from_pretrained(self.directory, attn_implementation="eager")
        self.model.to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(self.directory)
        try:
            self.processor = AutoImageProcessor.from_pretrained(self.directory)
        except (OSError, ValueError):  # no preprocessor_config.json: resize to the encoder's size ourselves
            self.processor = None
        encoder = self.model.config.encoder
        self.image_size = int(getattr(encoder, "image_size", 224))
        patch = getattr(encoder, "patch_size", None)
        side = self.image_size // int(patch) if patch else 0
        self.grid_shape: tuple[int, int] | None = (side, side) if side else None
        self.special_ids = set(self.tokenizer.all_special_ids)
        self.eos_id = self.model.config.eos_token_id
        if self.eos_id is None:
            self.eos_id = self.model.config.decoder.eos_token_id
        self.parameter_count = sum(p.numel() for p in self.model.parameters())

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> pixel values [3, H, W] for the encoder."""
        if self.processor is not None:
            return self.processor(images=image, return_tensors="pt")["pixel_values"][0]
        resized = image.resize((self.image_size, self.image_size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(resized, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)

    @torch.no_grad()
    def caption(self, pixel_values: torch.Tensor, beam_sizes: list[int],
                max_lengths: list[int]) -> list[DecodedCaption]:
        results: list[DecodedCaption | None] = [None] * len(beam_sizes)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, key in enumerate(zip(beam_sizes, max_lengths)):
            groups.setdefault(key, []).append(i)
        for (beams, limit), rows in groups.items():
            pv = pixel_values[rows].to(self.device)
            sequences = self.model.generate(pixel_values=pv, num_beams=beams, num_return_sequences=1,
                                            max_new_tokens=limit, do_sample=False)
            for row, caption in zip(rows, self._score(pv, sequences)):
                results[row] = caption
        return results  # type: ignore[return-value]

    def _score(self, pixel_values: torch.Tensor, sequences: torch.Tensor) -> list[DecodedCaption]:
        out = self.model(pixel_values=pixel_values, decoder_input_ids=sequences[:, :-1], output_attentions=True)
        log_probs = out.logits.float().log_softmax(-1)
        targets = sequences[:, 1:]
        token_lp = log_probs.gather(2, targets[..., None]).squeeze(-1).cpu().numpy()
        attention = None
        if out.cross_attentions and self.grid_shape is not None:
            mean = torch.stack([a.float() for a in out.cross_attentions]).mean((0, 2))  # [B, T, S]
            cells = self.grid_shape[0] * self.grid_shape[1]
            if mean.shape[-1] in (cells, cells + 1):
                mean = mean[..., -cells:]
                attention = (mean / mean.sum(-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()
        captions = []
        for b, ids in enumerate(targets.cpu().tolist()):
            tokens, lps, maps, end_lp = [], [], [], 0.0
            for j, token in enumerate(ids):
                if token == self.eos_id:
                    end_lp = float(token_lp[b, j])
                    break
                if token in self.special_ids:
                    continue
                tokens.append(token)
                lps.append(float(token_lp[b, j]))
                maps.append(attention[b, j] if attention is not None else None)
            words = self._words(tokens, lps, maps)
            score = (sum(w.log_prob for w in words) + end_lp) / max(1, len(tokens) + 1)
            captions.append(DecodedCaption(words, end_lp, score))
        return captions

    def _words(self, tokens: list[int], lps: list[float], maps: list) -> list[DecodedWord]:
        """Merge tokens into the whitespace-separated words of their decoded text."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        spans, owner = [], []  # word character spans; word index of each token
        position = 0
        for word in text.split():
            start = text.index(word, position)
            spans.append((start, start + len(word)))
            position = start + len(word)
        previous_length = 0
        for j in range(len(tokens)):
            length = len(self.tokenizer.decode(tokens[: j + 1], skip_special_tokens=True))
            # The token's new characters; the word holding its first non-space character owns it.
            index = next((w for w, (s, e) in enumerate(spans) if s < length and e > previous_length), None)
            owner.append(index)
            previous_length = length
        for j in range(len(owner)):  # whitespace-only tokens join the word before (or after) them
            if owner[j] is None:
                owner[j] = next((o for o in owner[j::-1] if o is not None), None)
            if owner[j] is None:
                owner[j] = next((o for o in owner[j:] if o is not None), 0)
        words = []
        for w, (s, e) in enumerate(spans):
            mine = [j for j, o in enumerate(owner) if o == w]
            log_prob = float(sum(lps[j] for j in mine))
            heat = np.zeros(0, dtype=np.float32)
            found = [maps[j] for j in mine if maps[j] is not None]
            if found:
                mean = np.mean(found, 0)
                heat = (mean / mean.sum()).reshape(self.grid_shape).astype(np.float32)
            words.append(DecodedWord(text[s:e], log_prob if mine else 0.0, heat))
        if not math.isfinite(sum(w.log_prob for w in words)):
            raise RuntimeError("non-finite log-probability from the transformers model")
        return words
