"""Hugging Face CLAP (model_type `clap`): audio and text in one space, from a local directory.

The directory holds what `save_pretrained` writes for a `ClapModel`, its tokenizer and its
feature extractor (`ClapFeatureExtractor`, which sets the sample rate: 48 kHz for the
public checkpoints). Clips arrive resampled to that rate (the service does it) and
longer than the extractor's `max_length_s` are cut to their first `max_length_s`
seconds here, so the extractor's random crop never runs: a clip always gives the same
vector. Embeddings are CLAP's projected features, L2-normalised; texts are padded to
the longest in the batch with an attention mask and pooled at their first token, so
a text's vector does not depend on its batch-mates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.hf import LoadError, parameter_count, strict_load, weights_fingerprint
from models.repository import ModelDetails, ModelEntry


def _features(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClapEmbedder:
    def __init__(self, entry: ModelEntry, device) -> None:
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        self.directory = Path(entry.path)
        self.device = torch.device(device)
        self.model = strict_load(ClapModel, entry, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
        if not (self.directory / "preprocessor_config.json").exists():
            raise LoadError(f"model {entry.name!r}: {self.directory} has no preprocessor_config.json (CLAP's feature "
                            "extractor sets the sample rate and the spectrogram; save it with save_pretrained)")
        self.extractor = ClapFeatureExtractor.from_pretrained(self.directory, local_files_only=True)
        self.sample_rate = int(self.extractor.sampling_rate)
        self.max_samples = int(self.extractor.nb_max_samples)
        self.max_tokens = int(entry.option("max_text_tokens", self.model.config.text_config.max_position_embeddings - 2))
        with torch.inference_mode():
            self.dimension = int(self.embed_texts(["a"]).shape[-1])
        self.details = ModelDetails("clap", str(self.directory), parameter_count=parameter_count(self.model),
                                    fingerprint=weights_fingerprint(self.directory), architecture="clap (htsat + roberta)")

    def embed_audio(self, clips: list[np.ndarray]) -> torch.Tensor:
        clips = [np.asarray(c[: self.max_samples], dtype=np.float32) for c in clips]
        inputs = self.extractor(clips, sampling_rate=self.sample_rate, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return F.normalize(_features(self.model.get_audio_features(**inputs)).float(), dim=-1)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt").to(self.device)
        features = self.model.get_text_features(input_ids=tokens["input_ids"],
                                                attention_mask=tokens.get("attention_mask"))
        return F.normalize(_features(features).float(), dim=-1)

    def unknown_words(self, text: str) -> list[str]:
        return []  # a sub-word tokenizer reads every word


def load(entry: ModelEntry, device) -> ClapEmbedder:
    return ClapEmbedder(entry, device)
