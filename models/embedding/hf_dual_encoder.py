"""Hugging Face dual encoders (CLIP, SigLIP, SigLIP 2, ALIGN) from a local directory.

The directory holds what `save_pretrained` writes for the model, its tokenizer and
(optionally) its image processor. Nothing is downloaded. The class is the family's own
(CLASSES): the family is config.json's model_type, or the one an entry names, so a
directory of another kind behind it (a CLAP directory as `family: clip`) fails strict
loading naming its keys (models/hf.py) instead of loading as what it is. Embeddings are the model's own projected features
(`get_text_features` / `get_image_features`), L2-normalised; the dimension is read
from an actual output at load time, not from a config field (ALIGN has none).

Texts: SigLIP and SigLIP 2 were trained on texts padded to `max_length` (64), and
their text tower pools the last position, so they are padded to that length here:
a text's vector never depends on its batch-mates. The others are padded to the
longest text in the batch with an attention mask, which is equivalent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from models.hf import image_processor, parameter_count, strict_load, weights_fingerprint
from models.repository import ModelDetails, ModelEntry

# family (model_type) -> its transformers class.
CLASSES = {"clip": "CLIPModel", "siglip": "SiglipModel", "siglip2": "Siglip2Model", "align": "AlignModel"}
# model_type -> whether texts are padded to max_length (the pooled position is the last one).
PAD_TO_MAX_LENGTH = {"siglip": True, "siglip2": True}


def _features(output) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output holds the projection; 4.x a tensor.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class DualEncoder:
    def __init__(self, entry: ModelEntry, device: torch.device | str = "cpu") -> None:
        import transformers
        from transformers import AutoTokenizer

        from models.families import model_type
        from models.repository import TRANSFORMERS

        self.directory = Path(entry.path)
        self.device = torch.device(device)
        family = model_type(self.directory) if entry.family == TRANSFORMERS else entry.family
        self.model = strict_load(getattr(transformers, CLASSES[family]), entry, self.device)
        config = self.model.config
        self.model_type = config.model_type
        self.tokenizer = AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
        self.processor = image_processor(self.directory)
        vision = config.vision_config
        size = entry.option("image_size", getattr(vision, "image_size", 224))
        self.image_size = int(size)
        self.mean = entry.option("mean", [0.5, 0.5, 0.5])
        self.std = entry.option("std", [0.5, 0.5, 0.5])
        text = config.text_config
        self.max_tokens = int(entry.option("max_text_tokens", getattr(text, "max_position_embeddings", 64)))
        self.pad_to_max = PAD_TO_MAX_LENGTH.get(self.model_type, False)
        with torch.inference_mode():
            self.dimension = int(self.embed_texts(["a"]).shape[-1])
        self.details = ModelDetails(self.model_type, str(self.directory), parameter_count=parameter_count(self.model),
                                    fingerprint=weights_fingerprint(self.directory), architecture=self.model_type)

    def prepare(self, image: Image.Image) -> dict[str, torch.Tensor]:
        """One RGB image -> the vision tower's inputs for it: pixel values [3, H, W], or for SigLIP 2
        its patches, patch mask and spatial shape (its processor's output, batch dimension dropped)."""
        if self.processor is not None:
            return {key: value[0] for key, value in self.processor(images=image, return_tensors="pt").items()}
        resized = image.resize((self.image_size, self.image_size), Image.BICUBIC)
        pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        return {"pixel_values": (pixels - mean) / torch.tensor(self.std, dtype=torch.float32)[:, None, None]}

    def input_warnings(self, image: Image.Image) -> list[str]:
        return []  # a model trained on real pictures has no narrower world to flag

    def embed_images(self, items: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        inputs = {key: torch.stack([item[key] for item in items]).to(self.device) for key in items[0]}
        features = _features(self.model.get_image_features(**inputs))
        return F.normalize(features.float(), dim=-1)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding="max_length" if self.pad_to_max else True, truncation=True,
                                max_length=self.max_tokens, return_tensors="pt").to(self.device)
        inputs = {"input_ids": tokens["input_ids"]}
        if "attention_mask" in tokens and not self.pad_to_max:
            inputs["attention_mask"] = tokens["attention_mask"]
        features = _features(self.model.get_text_features(**inputs))
        return F.normalize(features.float(), dim=-1)

    def unknown_words(self, text: str) -> list[str]:
        return []  # a sub-word tokenizer reads every word


def load(entry: ModelEntry, device) -> DualEncoder:
    return DualEncoder(entry, device)
