"""Explanation targets for Hugging Face backends: captioners (vision-encoder-decoder, BLIP, GIT, and the
generic image-text-to-text family where its vision tower is found) and image-text dual encoders (CLIP,
SigLIP, ALIGN).

The explained pixels are the model's own input: the served family's `prepare` (its image processor: resize,
rescale, normalise) turns the caller's image into pixel values, and those are mapped back to [0, 1] by the
processor's mean and std. Every method then works on that [N,3,H,W] image at the model's input size, the
target normalising it again in its forward pass, so the score it explains is exactly the served one.

What applies (docs/explanations.md has the table):
* GRAD_CAM: on a ViT, the tokens entering the vision tower's last block (what pytorch-grad-cam reads from
  `blocks[-1].norm1`: the last block's output tokens other than [CLS] do not reach a [CLS]-pooled
  embedding), the [CLS] / distillation tokens dropped and the rest reshaped to the patch grid, exactly as the
  captioning attention grids are; on Swin (Donut) the tokens entering the last stage; on ALIGN's
  EfficientNet the last block's feature map.
* ATTENTION_ROLLOUT (Abnar & Zuidema, 2020): the vision tower's self-attention, averaged over heads, plus
  the identity for the residual, rows renormalised, multiplied over the layers. For a caption word it is
  read from the word's own text-to-image attention (the decoder's cross-attention; GIT's attention from the
  text positions to the image tokens) carried through the rollout; for a dual encoder from the pooled
  token ([CLS] for CLIP; the attention-pooling head's probe for SigLIP). Global self-attention only: Swin's
  windows and ALIGN's convolutions have no rollout.
* ATTENTION (captioners): the model's own text-to-image attention for the word, as Caption reports it.
* GRADIENT, GRADIENT_SQUARED, OCCLUSION: any family (model-agnostic).
* GUIDED_BACKPROP, GUIDED_GRAD_CAM: only where the vision tower has `nn.ReLU` modules; ViTs use GELU and
  EfficientNet SiLU, so none of the families here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.explain.attribution import upsample
from models.explain.targets import Target


class NotExplainable(ValueError):
    """A method that does not apply to a model (the message says why)."""


def pixel_stats(processor, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalisation the family applies: its processor's image_mean / image_std, else the entry's."""
    if processor is not None:
        if getattr(processor, "do_normalize", True) is False:
            mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
        else:
            mean = getattr(processor, "image_mean", None) or mean
            std = getattr(processor, "image_std", None) or std
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float32).reshape(-1, 1, 1)  # noqa: E731
    return as_tensor(mean), as_tensor(std)


def vision_blocks(tower: nn.Module) -> nn.ModuleList:
    """The vision tower's sequence of blocks: the outermost ModuleList named `layer`, `layers` or `blocks`
    (ViT and DeiT `layers`, CLIP / SigLIP / BLIP / GIT `encoder.layers`, Swin's stages, EfficientNet's
    `encoder.blocks`)."""
    found = [(name.count("."), name, module) for name, module in tower.named_modules()
             if isinstance(module, nn.ModuleList) and len(module) and name.rsplit(".", 1)[-1] in
             ("layer", "layers", "blocks")]
    if not found:
        raise NotExplainable(f"no block list found in {type(tower).__name__}")
    return min(found, key=lambda f: f[:2])[2]


def _has(module: nn.Module, name: str) -> bool:
    try:
        module.get_submodule(name)
        return True
    except AttributeError:
        return False


def patch_tokens(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Tokens [N,T,D] -> a grid [N,D,rows,cols]: the leading [CLS] / distillation tokens dropped (the same rule
    as the captioning attention grids, models/captioning/hf_decoding.patch_grid)."""
    from models.captioning.hf_decoding import patch_grid

    found = patch_grid(tokens.shape[1], height, width)
    if found is None:
        raise NotExplainable(f"{tokens.shape[1]} tokens are no patch grid over {height}x{width}")
    extra, rows, columns = found
    return tokens[:, extra:].reshape(tokens.shape[0], rows, columns, -1).permute(0, 3, 1, 2)


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Attention weights are only returned by the eager implementation (sdpa and flash return none): switch to
    it for one call. The results are the same numbers; a normal call running meanwhile is only slower."""
    before = getattr(model.config, "_attn_implementation", None)
    if before in (None, "eager") or not hasattr(model, "set_attn_implementation"):
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def rollout(attentions, start: torch.Tensor | None = None) -> torch.Tensor:
    """Attention rollout: per layer the head-mean attention [N,T,T] plus the identity, rows renormalised,
    multiplied from the first layer up. Returns the rollout [N,T,T], or `start` [N,T] @ rollout."""
    result = None
    for layer in attentions:
        a = layer.float().mean(1)
        a = a + torch.eye(a.shape[-1], device=a.device)
        a = a / a.sum(-1, keepdim=True)
        result = a if result is None else a @ result
    if start is None:
        return result
    return torch.einsum("nt,nts->ns", start, result)


@dataclass
class HFTarget(Target):
    """A score of a Hugging Face model of [0,1] images at its input size. `normalise` maps them to the model's
    pixel values; `unsupported` says which methods do not apply and why."""

    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    capture: str = "input"
    unsupported: dict[str, str] = field(default_factory=dict)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean.to(images.device)) / self.std.to(images.device)

    def to_grid(self, acts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return patch_tokens(acts, *size) if acts.dim() == 3 else acts

    @classmethod
    def images_of(cls, pixel_values: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """Served pixel values [N,3,H,W] -> the [0,1] images they came from."""
        return pixel_values.float() * std.to(pixel_values.device) + mean.to(pixel_values.device)


def _common_unsupported(tower: nn.Module, kind: str, rollout_reason: str = "") -> dict[str, str]:
    out = {}
    if not any(isinstance(m, nn.ReLU) for m in tower.modules()):
        why = f"the {kind} vision tower has no ReLU modules (guided back-propagation rewires ReLUs)"
        out["guided_backprop"] = why
        out["guided_grad_cam"] = why
    if rollout_reason:
        out["attention_rollout"] = rollout_reason
    return out


# --- captioners ------------------------------------------------------------------------------------------

def caption_tower(captioner) -> nn.Module:
    """The image encoder of a served HF captioner."""
    model = captioner.model
    if hasattr(model, "decoder") and _has(model, "encoder"):  # vision-encoder-decoder
        return model.encoder
    for name in ("vision_model", "git.image_encoder", "model.vision_tower", "vision_tower"):
        if _has(model, name):
            return model.get_submodule(name)
    raise NotExplainable(f"no vision tower found in {type(model).__name__}")


@dataclass
class HFCaptionWordTarget(HFTarget):
    """log p(word | image, words before) of a teacher-forced caption for a served HF captioner
    (models/captioning/hf_decoding.TransformersCaptioner): the sum over the word's tokens."""

    captioner: object = None
    sequences: torch.Tensor | None = None  # [1, T]: start token, the caption's tokens, end token
    positions: list[int] = field(default_factory=list)  # indexes into sequences[:, 1:] of the word's tokens
    tower: nn.Module | None = None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        logits, _ = self.captioner._forward(self.normalise(images), self.sequences.expand(images.shape[0], -1))
        log_probs = logits.float().log_softmax(-1)
        targets = self.sequences[:, 1:].expand(images.shape[0], -1)
        token_lp = log_probs.gather(2, targets[..., None])[..., 0]
        return token_lp[:, self.positions].sum(1)

    def _word_attention(self, images: torch.Tensor) -> torch.Tensor:
        """The word's text-to-image attention [N,S] over the encoder's tokens (extras included): mean over
        layers, heads and the word's tokens."""
        _, attentions = self.captioner._forward(self.normalise(images), self.sequences.expand(images.shape[0], -1))
        if not attentions:
            raise NotExplainable("the model returned no text-to-image attention")
        mean = torch.stack([a.float() for a in attentions]).mean((0, 2))  # [N, T, S]
        return mean[:, self.positions].mean(1)

    @torch.no_grad()
    def attention(self, images: torch.Tensor) -> torch.Tensor:
        size = tuple(images.shape[-2:])
        word = self._word_attention(images)
        grid = patch_tokens(word[..., None], *size)[:, 0]
        return upsample(grid / grid.flatten(1).sum(1).clamp_min(1e-12)[:, None, None], size)

    @torch.no_grad()
    def attention_rollout(self, images: torch.Tensor) -> torch.Tensor:
        size = tuple(images.shape[-2:])
        word = self._word_attention(images)
        with eager_attention(self.tower):
            out = self.tower(pixel_values=self.normalise(images), output_attentions=True)
        if not out.attentions or out.attentions[0].shape[-1] != word.shape[-1]:
            raise NotExplainable("the vision tower's attention does not cover the tokens the text attends to")
        carried = rollout(out.attentions, word)
        return upsample(patch_tokens(carried[..., None], *size)[:, 0], size)

    @classmethod
    def of(cls, captioner, caption_ids: list[int], positions: list[int], word: str) -> "HFCaptionWordTarget":
        tower = caption_tower(captioner)
        blocks = vision_blocks(tower)
        mean, std = pixel_stats(captioner.processor, captioner.mean, captioner.std)
        device = captioner.device
        windowed = "swin" in type(tower).__name__.lower()
        unsupported = _common_unsupported(tower, type(tower).__name__,
                                          "Swin attends within windows: there is no global attention to roll out"
                                          if windowed else "")
        return cls(captioner.model, blocks[-1], word, mean=mean, std=std, capture="input", unsupported=unsupported,
                   captioner=captioner, sequences=torch.tensor([caption_ids], device=device), positions=positions,
                   tower=tower)


# --- dual encoders ---------------------------------------------------------------------------------------

@dataclass
class HFMatchTarget(HFTarget):
    """cosine(image embedding, text embedding) of a served HF dual encoder (models/embedding/hf_dual_encoder)."""

    encoder: object = None
    text_embedding: torch.Tensor | None = None
    tower: nn.Module | None = None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        from models.embedding.hf_dual_encoder import _features

        features = _features(self.encoder.model.get_image_features(pixel_values=self.normalise(images)))
        return F.normalize(features.float(), dim=-1) @ self.text_embedding

    @torch.no_grad()
    def attention_rollout(self, images: torch.Tensor) -> torch.Tensor:
        size = tuple(images.shape[-2:])
        pooled: list[torch.Tensor] = []
        head = getattr(self.tower, "head", None)
        handle = None
        if head is not None and isinstance(getattr(head, "attention", None), nn.MultiheadAttention):
            # SigLIP pools by a probe's attention over the tokens: that row starts the rollout.
            handle = head.attention.register_forward_hook(lambda _m, _i, out: pooled.append(out[1]))
        try:
            with eager_attention(self.tower):
                out = self.tower(pixel_values=self.normalise(images), output_attentions=True)
        finally:
            if handle is not None:
                handle.remove()
        tokens = out.attentions[-1].shape[-1]
        if pooled and pooled[-1] is not None:
            start = pooled[-1].float().reshape(images.shape[0], -1, tokens).mean(1)
        else:  # [CLS] pooling: its row
            start = torch.zeros(images.shape[0], tokens, device=images.device)
            start[:, 0] = 1.0
        carried = rollout(out.attentions, start)
        return upsample(patch_tokens(carried[..., None], *size)[:, 0], size)

    @classmethod
    def of(cls, encoder, text: str) -> "HFMatchTarget":
        kind = encoder.model_type
        if kind not in ("clip", "siglip", "align"):
            raise NotExplainable(f"{kind} models are not explained: its processor feeds the model patch sequences "
                                 "of a variable size, not an image")
        tower = encoder.model.vision_model
        blocks = vision_blocks(tower)
        mean, std = pixel_stats(encoder.processor, encoder.mean, encoder.std)
        with torch.no_grad():
            text_embedding = encoder.embed_texts([text])[0].detach().clone()
        cnn = kind == "align"
        unsupported = _common_unsupported(tower, kind, "ALIGN's image tower is a CNN: no attention to roll out"
                                          if cnn else "")
        return cls(encoder.model, blocks[-1], text, mean=mean, std=std, capture="output" if cnn else "input",
                   unsupported=unsupported, encoder=encoder, text_embedding=text_embedding, tower=tower)


def hf_word_positions(captioner, sequence: list[int], word_index: int) -> tuple[str, list[str], list[int]]:
    """(caption text, its words, positions in sequence[1:] of word `word_index`'s tokens) of a teacher-forced
    sequence (start token, tokens, end token), read as Caption reads a generated one: up to the end token,
    special tokens skipped, tokens merged into whitespace-separated words."""
    from models.captioning.hf_decoding import token_owners

    kept = []
    for j, token in enumerate(sequence[1:]):
        if token == captioner.eos_id:
            break
        if token not in captioner.special_ids:
            kept.append((j, token))
    text, spans, owners = token_owners(captioner.tokenizer, [t for _, t in kept])
    words = [text[a:b] for a, b in spans]
    return text, words, [kept[k][0] for k, owner in enumerate(owners) if owner == word_index]
