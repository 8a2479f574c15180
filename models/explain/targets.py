"""What an explanation explains: one differentiable score per model, plus the layer Grad-CAM reads.

Every `Target` takes images float [N,3,H,W] in [0,1] at the network's input size and returns one
score per image; `layer` is the last convolutional block (Grad-CAM's choice), `model` the network
whose ReLUs guided back-propagation rewires.

* `JudgeTarget`: a judge head's logit for one class; `cam` is its exact class activation map.
* `CaptionWordTarget`: log p(word i | image, words before i) of a given caption (teacher forcing);
  `attention` is the decoder's own attention for that word.
* `MatchTarget`: cosine similarity of the image embedding with a fixed text embedding.
* `SoundTarget`: the audio-visual score, the peak cosine between the clip's embedding and the image's
  location embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.explain.attribution import class_activation_map, upsample


@dataclass
class Target:
    model: nn.Module
    layer: nn.Module
    name: str = ""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class JudgeTarget(Target):
    head: str = "shape"
    class_index: int = 0

    @classmethod
    def of(cls, net: nn.Module, head: str, class_index: int) -> "JudgeTarget":
        return cls(net, net.trunk, f"{head}={class_index}", head, class_index)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)[self.head][:, self.class_index]

    @torch.no_grad()
    def cam(self, images: torch.Tensor) -> torch.Tensor:
        """The judge pools the trunk's features by mean and max, then a ReLU hidden layer and a linear layer.
        At a given input that head is linear in the pooled vector, with weights W_out[c] * active @ W_hidden,
        so the logit decomposes exactly over the grid: the mean half's weights spread over every cell (CAM of
        a global-average-pooled head, Zhou et al.) and the max half's land on each channel's argmax cell. The
        map sums to the logit minus the biases' share."""
        net = self.model
        features = net.trunk(images - 0.5)  # [N,K,h,w]
        k, cells = features.shape[1], features.shape[2] * features.shape[3]
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        hidden_linear = net.hidden[0]
        active = (hidden_linear(pooled) > 0).to(features.dtype)  # [N,hidden]
        offset = sum(n for name, n in net.config.heads[:[h for h, _ in net.config.heads].index(self.head)])
        w_out = net.out.weight[offset + self.class_index]  # [hidden]
        effective = (w_out * active) @ hidden_linear.weight  # [N, 2K]
        mean_part = class_activation_map(features, effective[:, :k]) / cells
        flat = features.flatten(2)
        onehot = torch.zeros_like(flat).scatter_(2, flat.argmax(2, keepdim=True), 1.0)
        max_part = class_activation_map(onehot.view_as(features) * features, effective[:, k:])
        return upsample(mean_part + max_part, tuple(images.shape[-2:]))


@dataclass
class CaptionWordTarget(Target):
    captions: torch.Tensor | None = None  # [1, T] ids: <start> w0 .. <end>
    word_index: int = 0

    @classmethod
    def of(cls, captioner: nn.Module, caption: str, word_index: int) -> "CaptionWordTarget":
        ids = torch.tensor([captioner.vocab.encode(caption)], device=next(captioner.parameters()).device)
        return cls(captioner, captioner.encoder.body, caption.split()[word_index], ids, word_index)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        captions = self.captions.expand(images.shape[0], -1)
        logits, _ = self.model(images, captions)
        word = captions[:, self.word_index + 1]
        return logits[:, self.word_index].log_softmax(-1).gather(1, word[:, None])[:, 0]

    @torch.no_grad()
    def attention(self, images: torch.Tensor) -> torch.Tensor:
        """The decoder's attention over the grid when it emitted this word, at input resolution."""
        _, alphas = self.model(images, self.captions.expand(images.shape[0], -1))
        h, w = self.model.grid_shape
        return upsample(alphas[:, self.word_index].reshape(-1, h, w), tuple(images.shape[-2:]))


@dataclass
class MatchTarget(Target):
    text_embedding: torch.Tensor | None = None  # [D], unit length

    @classmethod
    def of(cls, embedder: nn.Module, text: str) -> "MatchTarget":
        with torch.no_grad():
            text_embedding = embedder.encode_texts([text])[0]
        return cls(embedder, embedder.image_encoder.trunk, text, text_embedding.detach().clone())

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_images(images) @ self.text_embedding


@dataclass
class SoundTarget(Target):
    audio_embedding: torch.Tensor | None = None  # [D], unit length

    @classmethod
    def of(cls, localizer: nn.Module, samples: torch.Tensor) -> "SoundTarget":
        with torch.no_grad():
            audio = localizer.embed_audio(samples[None])[0]
        return cls(localizer, localizer.visual.fuse, "sound", audio.detach().clone())

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        cosine = torch.einsum("bdhw,d->bhw", self.model.embed_images(images * 2.0 - 1.0), self.audio_embedding)
        return cosine.flatten(1).amax(1)
