"""The generic image-text-to-text captioning family: any captioning `model_type` without a line of
its own that transformers maps to an image-text-to-text model (`AutoModelForImageTextToText` +
`AutoProcessor`), e.g. BLIP-2, Pix2Struct, LLaVA, PaliGemma, Idefics3.

The model's own processor builds every input (image placeholder tokens, pixel values,
Pix2Struct's flattened patches), so `prepare` only resizes the picture to one size per
model (`image_size` option, else the processor's own size; the servicer batches
prepared images) and `caption` hands the batch to the processor with the entry's
`prompt` option (default empty: a plain caption). When the processor expects an image
placeholder in the text (LLaVA, Idefics3) and the prompt has none, one is put first.

Decoding is `generate` (greedy or beam, no sampling); the chosen sequences are then run
once more with teacher forcing to read each token's log-probability and attention
(mean over layers and heads, as models/captioning/hf_decoding.py does):

* decoder-only models that put image tokens in the text sequence (LLaVA, PaliGemma,
  Idefics3 without image splitting): each text position's self-attention to the image
  tokens, when those form one patch grid;
* encoder-decoder models (Pix2Struct): the decoder's cross-attention over the encoder's
  patches, placed on the grid by the row/column numbers Pix2Struct's patches carry, or
  read from the sequence length for a fixed grid;
* BLIP-2 and InstructBLIP: empty maps. Their language model attends to the Q-Former's
  learned query tokens, each a summary of the whole picture, not to image positions.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.captioning.decoding import DecodedCaption
from models.captioning.hf_decoding import decoded_captions, group_rows, patch_grid
from models.hf import parameter_count, strict_load, weights_fingerprint
from models.repository import ModelDetails, ModelEntry

LOG = logging.getLogger(__name__)
DEFAULT_SIZE = 224
# Families whose language model reads learned query tokens instead of image patches.
QUERY_TOKEN_FAMILIES = {"blip-2": "BLIP-2", "instructblip": "InstructBLIP", "instructblipvideo": "InstructBLIP"}


def _sides(size) -> dict:
    """A processor's size setting (dict, SizeDict or int) as a plain dict."""
    if isinstance(size, int):
        return {"height": size, "width": size}
    keys = ("height", "width", "shortest_edge", "longest_edge")
    return {k: getattr(size, k, None) if not isinstance(size, dict) else size.get(k) for k in keys} if size else {}


def processor_size(processor, fallback: int) -> tuple[int, int]:
    """(height, width) the processor works at, when it says: its (crop) size, or for a variable-resolution
    processor (Pix2Struct) the square that fills its patch budget."""
    images = getattr(processor, "image_processor", None)
    sources = [_sides(getattr(images, "crop_size", None)) if getattr(images, "do_center_crop", False) else {},
               _sides(getattr(images, "size", None))]
    for source in sources:
        if source.get("height") and source.get("width"):
            return int(source["height"]), int(source["width"])
        if source.get("shortest_edge"):
            return int(source["shortest_edge"]), int(source["shortest_edge"])
    budget, patch = getattr(images, "max_patches", None), _sides(getattr(images, "patch_size", None))
    if budget and patch.get("height") and patch.get("width"):
        side = int(math.isqrt(int(budget)))
        return side * int(patch["height"]), side * int(patch["width"])
    return fallback, fallback


class ImageTextToTextCaptioner:
    def __init__(self, entry: ModelEntry, device) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.directory = Path(entry.path)
        self.device = torch.device(device)
        # Eager attention: the fused kernels do not return attention weights.
        self.model = strict_load(AutoModelForImageTextToText, entry, device, attn_implementation="eager")
        self.processor = AutoProcessor.from_pretrained(self.directory, local_files_only=True)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        config = self.model.config
        self.model_type = str(config.model_type)
        self.encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        size = entry.option("image_size")
        if size is None:
            self.image_size = processor_size(self.processor, DEFAULT_SIZE)
        else:
            self.image_size = tuple(int(s) for s in size) if isinstance(size, (list, tuple)) else (int(size),) * 2
        self.image_token_id = getattr(config, "image_token_id", None)
        if self.image_token_id is None:
            self.image_token_id = getattr(config, "image_token_index", None)
        self.prompt = self._with_placeholder(str(entry.option("prompt", "")))
        generation = self.model.generation_config
        self.eos_ids = set(_as_list(generation.eos_token_id) or _as_list(config.get_text_config().eos_token_id))
        self.special_ids = set(self.tokenizer.all_special_ids)
        if self.model_type in QUERY_TOKEN_FAMILIES:
            self.attention_note = (f"{QUERY_TOKEN_FAMILIES[self.model_type]}'s language model attends to the "
                                   "Q-Former's learned query tokens, not to image positions")
        else:
            self.attention_note = ""
        self.details = ModelDetails(
            "image-text-to-text", str(self.directory), parameter_count=parameter_count(self.model),
            fingerprint=weights_fingerprint(self.directory),
            architecture=f"image-text-to-text ({self.model_type}: {type(self.model).__name__})",
            notes=f"no per-word attention maps: {self.attention_note}" if self.attention_note else "")
        if self.details.notes:
            LOG.info("model %r: %s", entry.name, self.details.notes)

    # --- the Captioner Protocol -------------------------------------------------------------

    def input_warnings(self, image: Image.Image) -> list[str]:
        return []  # a model trained on real pictures has no narrower world to flag

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> [3, H, W] uint8 at the model's size; the processor does the rest per batch."""
        resized = image.convert("RGB").resize((self.image_size[1], self.image_size[0]), Image.BICUBIC)
        return torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1)

    @torch.no_grad()
    def caption(self, pixels: torch.Tensor, beam_sizes: list[int], max_lengths: list[int],
                on_settled=None) -> list[DecodedCaption]:
        results: list[DecodedCaption | None] = [None] * len(beam_sizes)
        for (beams, limit), rows in group_rows(beam_sizes, max_lengths).items():
            inputs = self._inputs(pixels[rows])
            sequences = self.model.generate(**inputs, num_beams=beams, num_return_sequences=1,
                                            max_new_tokens=limit, do_sample=False)
            for row, caption in zip(rows, self._score(inputs, sequences)):
                results[row] = caption
        return results  # type: ignore[return-value]

    # --- inputs -----------------------------------------------------------------------------

    def _inputs(self, pixels: torch.Tensor) -> dict:
        images = [Image.fromarray(p.permute(1, 2, 0).numpy()) for p in pixels.cpu()]
        kwargs = {"images": images, "return_tensors": "pt"}
        budget = getattr(getattr(self.processor, "image_processor", None), "max_patches", None)
        if budget:  # the processor's call defaults would override the budget its image processor was saved with
            kwargs["max_patches"] = budget
        if self.prompt or not self.encoder_decoder:
            kwargs["text"] = [self.prompt] * len(images)
        inputs = self.processor(**kwargs)
        # `labels` (PaliGemma's processor returns them for training) would make the forward pass compute a loss.
        return {key: value.to(self.device) for key, value in inputs.items()
                if isinstance(value, torch.Tensor) and key != "labels"}

    def _with_placeholder(self, prompt: str) -> str:
        """The prompt, with the processor's image placeholder first when it expects one and none is there
        (asked of the processor itself: BLIP-2's and PaliGemma's insert their image tokens on their own)."""
        if self.encoder_decoder or self.image_token_id is None:
            return prompt
        placeholder = getattr(self.processor, "image_token", None)
        placeholder = getattr(placeholder, "content", placeholder)
        if not placeholder or placeholder in prompt:
            return prompt
        blank = Image.new("RGB", (self.image_size[1], self.image_size[0]))

        def ids(text: str):
            try:
                return self.processor(images=[blank], text=[text], return_tensors="pt")["input_ids"]
            except (ValueError, RuntimeError, TypeError, KeyError, IndexError):
                return None  # the processor refuses text without its placeholder

        alone, first = ids(prompt), ids(placeholder + prompt)
        if alone is not None and (alone == self.image_token_id).any():
            # The processor inserts its image tokens itself; say it the way it prefers when that is the same.
            return placeholder + prompt if first is not None and torch.equal(alone, first) else prompt
        return placeholder + prompt

    # --- scoring ----------------------------------------------------------------------------

    def _score(self, inputs: dict, sequences: torch.Tensor) -> list[DecodedCaption]:
        """Each generated sequence's token log-probabilities and per-token maps, by teacher forcing."""
        if self.encoder_decoder:
            out = self.model(**inputs, decoder_input_ids=sequences[:, :-1], output_attentions=True)
            logits, targets = out.logits, sequences[:, 1:]
            attention, grid = self._cross_attention(out.cross_attentions, inputs)
        else:
            prompt = inputs["input_ids"]
            prompt_length = prompt.shape[1]
            if sequences.shape[1] < prompt_length or not torch.equal(sequences[:, :prompt_length], prompt):
                # Some models' generate returns the new tokens only: put the prompt back in front.
                sequences = torch.cat([prompt, sequences], 1)
            text = sequences[:, :-1]
            forward = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
            for key, value in forward.items():
                if value.dim() == 2 and value.shape == prompt.shape:
                    # Per-token inputs cover the generated tokens too; PaliGemma's token_type_ids mark them 1
                    # (suffix: causal attention, as generate attends), other markers (image tokens) 0.
                    fill = 1 if key == "token_type_ids" else 0
                    forward[key] = torch.cat([value, value.new_full((value.shape[0], text.shape[1] - prompt_length),
                                                                    fill)], 1)
            mask = torch.ones_like(text)
            mask[:, :prompt_length] = inputs["attention_mask"] if "attention_mask" in inputs else 1
            out = self.model(**forward, input_ids=text, attention_mask=mask,
                             output_attentions=not self.attention_note)
            logits, targets = out.logits[:, prompt_length - 1:], sequences[:, prompt_length:]
            attention, grid = self._image_token_attention(getattr(out, "attentions", None), text, prompt_length)
        token_lp = logits.float().log_softmax(-1).gather(2, targets[..., None]).squeeze(-1).cpu().numpy()
        return decoded_captions(self.tokenizer, targets, token_lp, attention, grid, self.eos_ids, self.special_ids)

    def _image_token_attention(self, attentions, text: torch.Tensor, prompt_length: int):
        """Each generated position's self-attention to the image tokens of its own row ([B, T, n]) and
        their grid, or (None, None) when the model has no image tokens in its text or they form no grid."""
        if self.attention_note or self.image_token_id is None or not attentions:
            return None, None
        is_image = text == self.image_token_id
        counts = is_image.sum(1)
        if int(counts.min()) == 0 or int(counts.min()) != int(counts.max()):
            return None, None
        found = patch_grid(int(counts[0]), *self.image_size)
        if found is None or found[0]:
            return None, None
        mean = torch.stack([a.float() for a in attentions]).mean((0, 2))[:, prompt_length - 1:]  # [B, T, S]
        heat = torch.stack([mean[b][:, is_image[b]] for b in range(mean.shape[0])])
        heat = heat / heat.sum(-1, keepdim=True).clamp_min(1e-12)
        return heat.cpu().numpy(), found[1:]

    def _cross_attention(self, attentions, inputs: dict):
        """The decoder's cross-attention over the encoder's patches on their grid ([B, T, rows * cols])."""
        if not attentions:
            return None, None
        mean = torch.stack([a.float() for a in attentions]).mean((0, 2))  # [B, T, S]
        patches = inputs.get("flattened_patches")
        if patches is not None:
            # Pix2Struct: each patch starts with its 1-based row and column; 0 marks padding.
            rows_of, columns_of = patches[..., 0].long(), patches[..., 1].long()
            rows, columns = int(rows_of.max()), int(columns_of.max())
            if rows < 1 or columns < 1:
                return None, None
            heat = torch.zeros(*mean.shape[:2], rows * columns, device=mean.device)
            real = rows_of > 0
            cell = ((rows_of - 1) * columns + (columns_of - 1)).clamp_min(0)
            for b in range(mean.shape[0]):
                heat[b].index_add_(1, cell[b][real[b]], mean[b][:, real[b]])
        else:
            found = patch_grid(mean.shape[-1], *self.image_size)
            if found is None:
                return None, None
            extra, rows, columns = found
            heat = mean[..., extra:]
        heat = heat / heat.sum(-1, keepdim=True).clamp_min(1e-12)
        return heat.cpu().numpy(), (rows, columns)


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def load(entry: ModelEntry, device) -> ImageTextToTextCaptioner:
    return ImageTextToTextCaptioner(entry, device)
