"""Hugging Face `VisionEncoderDecoderModel` captioners (ViT, DeiT, Swin/Donut encoders with any
text decoder) from a local directory. Attention: the decoder's cross-attention over the encoder's
patches (models/captioning/hf_decoding.py)."""

from __future__ import annotations

from models.captioning.hf_decoding import TransformersCaptioner
from models.hf import strict_load
from models.repository import ModelEntry


class VisionEncoderDecoderCaptioner(TransformersCaptioner):
    def __init__(self, entry: ModelEntry, device) -> None:
        from transformers import AutoTokenizer, VisionEncoderDecoderModel

        # Eager attention: the fused kernels do not return attention weights.
        model = strict_load(VisionEncoderDecoderModel, entry, device, attn_implementation="eager")
        encoder, decoder = model.config.encoder, model.config.decoder
        super().__init__(entry, device, model, AutoTokenizer.from_pretrained(entry.path, local_files_only=True),
                         "vision-encoder-decoder", f"vision-encoder-decoder ({encoder.model_type} + "
                                                   f"{decoder.model_type})", getattr(encoder, "image_size", 224))
        self.eos_id = model.config.eos_token_id if model.config.eos_token_id is not None else decoder.eos_token_id

    def _generate(self, pixel_values, beams, limit):
        return self.model.generate(pixel_values=pixel_values, num_beams=beams, num_return_sequences=1,
                                   max_new_tokens=limit, do_sample=False)

    def _forward(self, pixel_values, sequences):
        out = self.model(pixel_values=pixel_values, decoder_input_ids=sequences[:, :-1], output_attentions=True)
        return out.logits, out.cross_attentions


def load(entry: ModelEntry, device) -> VisionEncoderDecoderCaptioner:
    return VisionEncoderDecoderCaptioner(entry, device)
