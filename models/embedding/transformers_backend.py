"""A Hugging Face `CLIPModel` loaded from a local directory, embedding like the built-in.

The directory holds what `save_pretrained` writes for the model, its tokenizer and
(optionally) its image processor, e.g. a `CLIPProcessor`'s files. Nothing is
downloaded. Embeddings are CLIP's projected features, L2-normalised; texts longer
than the text model's positions are truncated by the tokenizer.

`fingerprint` is the sha256 of the weights files, so a collection built with one
set of weights refuses vectors from another set under the same name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def weights_fingerprint(directory: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _features(output) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output holds the projection; 4.x a tensor.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class TransformersEmbedder:
    def __init__(self, directory: str | Path, device: torch.device | str = "cpu") -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        self.directory = Path(directory)
        self.device = torch.device(device)
        self.model = CLIPModel.from_pretrained(self.directory).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(self.directory)
        try:
            self.processor = AutoImageProcessor.from_pretrained(self.directory)
        except (OSError, ValueError):  # no preprocessor_config.json: resize and normalise ourselves
            self.processor = None
        self.image_size = int(self.model.config.vision_config.image_size)
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings)
        self.dimension = int(self.model.config.projection_dim)
        self.parameter_count = sum(p.numel() for p in self.model.parameters())
        self.fingerprint = weights_fingerprint(self.directory)

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> pixel values [3, H, W] for the vision tower."""
        if self.processor is not None:
            return self.processor(images=image, return_tensors="pt")["pixel_values"][0]
        resized = image.resize((self.image_size, self.image_size), Image.BICUBIC)
        return torch.from_numpy(np.asarray(resized, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)

    @torch.no_grad()
    def embed_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = _features(self.model.get_image_features(pixel_values=pixel_values.to(self.device)))
        return F.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt").to(self.device)
        features = _features(self.model.get_text_features(input_ids=tokens["input_ids"],
                                                          attention_mask=tokens.get("attention_mask")))
        return F.normalize(features.float(), dim=-1)
