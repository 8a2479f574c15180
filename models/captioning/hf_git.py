"""Hugging Face GIT captioners (`GitForCausalLM`, model_type `git`) from a local directory.

GIT has no cross-attention: its one transformer reads the image tokens ([CLS] + patches)
followed by the text. The per-word map is each text position's self-attention to the
image tokens (mean over layers and heads), which is where GIT's words look at the
picture (models/captioning/hf_decoding.py drops the [CLS] and renormalises).
"""

from __future__ import annotations

from models.captioning.hf_decoding import TransformersCaptioner
from models.hf import strict_load
from models.repository import ModelEntry


class GitCaptioner(TransformersCaptioner):
    def __init__(self, entry: ModelEntry, device) -> None:
        from transformers import AutoTokenizer, GitForCausalLM

        model = strict_load(GitForCausalLM, entry, device, attn_implementation="eager")
        super().__init__(entry, device, model, AutoTokenizer.from_pretrained(entry.path, local_files_only=True),
                         "git", "git (clip vit + causal transformer)", model.config.vision_config.image_size)
        self.eos_id = model.config.eos_token_id

    def _generate(self, pixel_values, beams, limit):
        return self.model.generate(pixel_values=pixel_values, num_beams=beams, num_return_sequences=1,
                                   max_new_tokens=limit, do_sample=False)

    def _forward(self, pixel_values, sequences):
        text = sequences[:, :-1]
        out = self.model(pixel_values=pixel_values, input_ids=text, output_attentions=True)
        length = text.shape[1]
        image_tokens = out.attentions[0].shape[-1] - length
        # Text positions' attention to the image tokens, which come first in GIT's sequence.
        to_image = tuple(a[:, :, -length:, :image_tokens] for a in out.attentions)
        return out.logits[:, -length:], to_image


def load(entry: ModelEntry, device) -> GitCaptioner:
    return GitCaptioner(entry, device)
