"""Hugging Face BLIP captioners (`BlipForConditionalGeneration`, model_type `blip`) from a local
directory. Attention: the text decoder's cross-attention over the ViT's [CLS] + patch tokens
(models/captioning/hf_decoding.py drops the [CLS])."""

from __future__ import annotations

from models.captioning.hf_decoding import TransformersCaptioner
from models.hf import strict_load
from models.repository import ModelEntry


class BlipCaptioner(TransformersCaptioner):
    def __init__(self, entry: ModelEntry, device) -> None:
        from transformers import AutoTokenizer, BlipForConditionalGeneration

        model = strict_load(BlipForConditionalGeneration, entry, device, attn_implementation="eager")
        super().__init__(entry, device, model, AutoTokenizer.from_pretrained(entry.path, local_files_only=True),
                         "blip", "blip (vit + bert decoder)", model.config.vision_config.image_size)
        self.eos_id = model.config.text_config.sep_token_id
        if self.eos_id is None:
            self.eos_id = model.config.text_config.eos_token_id

    def _generate(self, pixel_values, beams, limit):
        return self.model.generate(pixel_values=pixel_values, num_beams=beams, num_return_sequences=1,
                                   max_new_tokens=limit, do_sample=False)

    def _forward(self, pixel_values, sequences):
        image = self.model.vision_model(pixel_values=pixel_values).last_hidden_state
        out = self.model.text_decoder(input_ids=sequences[:, :-1], encoder_hidden_states=image,
                                      output_attentions=True, return_dict=True)
        return out.logits, out.cross_attentions


def load(entry: ModelEntry, device) -> BlipCaptioner:
    return BlipCaptioner(entry, device)
