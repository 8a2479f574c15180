"""Tiny randomly initialised Hugging Face models, saved in each family's real on-disk format.

Nothing is downloaded: configs are built here, weights are random (seeded), tokenizers
are word-level over the ShapesWorld vocabulary, and `save_pretrained` writes exactly
what a user's directory of that family holds (config.json with its model_type,
model.safetensors, tokenizer and processor files).
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.shapesworld import VOCABULARY

# BERT-style specials first (BLIP and GIT use them), then GPT-2 style ones.
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "<s>", "</s>"]
WORDS = SPECIALS + sorted(set(VOCABULARY))
PAD, UNK, CLS, SEP, DEC, BOS, EOS = 0, 1, 2, 3, 5, 6, 7
SMALL = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)


def word_tokenizer(bos: str = "<s>", eos: str = "</s>", **specials):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=bos, eos_token=eos, pad_token="[PAD]",
                                   unk_token="[UNK]", **specials)


def _keep_to_words(model, bos: int, eos: int) -> None:
    """A random model likes to repeat specials; keep it to words so there is something to check."""
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        decoder_start_token_id=bos, bos_token_id=bos, eos_token_id=eos, pad_token_id=PAD,
        suppress_tokens=[t for t in range(len(SPECIALS)) if t != eos], min_new_tokens=3)


def image_processor(directory: Path, size: int | dict) -> None:
    from transformers import ViTImageProcessor

    side = size if isinstance(size, dict) else {"height": size, "width": size}
    ViTImageProcessor(size=side).save_pretrained(directory)


def vision_encoder_decoder(directory: Path, encoder: str = "vit") -> Path:
    """ViT, DeiT (two extra tokens) or Swin/Donut (no extra token, a [height, width] size) + GPT-2."""
    from transformers import (
        DeiTConfig, DonutSwinConfig, GPT2Config, ViTConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel,
    )

    if encoder == "vit":
        enc = ViTConfig(image_size=32, patch_size=8, **SMALL)
    elif encoder == "deit":
        enc = DeiTConfig(image_size=32, patch_size=8, **SMALL)
    else:  # Donut's Swin: patch 4, two stages -> an 8x8 then a 4x4 grid over 32 px
        enc = DonutSwinConfig(image_size=[32, 32], patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                              window_size=4)
    dec = GPT2Config(vocab_size=len(WORDS), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                     bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = BOS, PAD, EOS
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(config=config)
    _keep_to_words(model, BOS, EOS)
    model.save_pretrained(directory)
    word_tokenizer().save_pretrained(directory)
    image_processor(directory, 32)
    return Path(directory)


def blip(directory: Path) -> Path:
    from transformers import BlipConfig, BlipForConditionalGeneration

    config = BlipConfig(
        text_config=dict(vocab_size=len(WORDS), max_position_embeddings=32, bos_token_id=DEC, eos_token_id=SEP,
                         sep_token_id=SEP, pad_token_id=PAD, **SMALL),
        vision_config=dict(image_size=32, patch_size=8, **SMALL), projection_dim=16)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config)
    _keep_to_words(model, DEC, SEP)
    model.save_pretrained(directory)
    word_tokenizer("[DEC]", "[SEP]", cls_token="[CLS]", sep_token="[SEP]").save_pretrained(directory)
    image_processor(directory, 32)
    return Path(directory)


def git(directory: Path) -> Path:
    from transformers import GitConfig, GitForCausalLM

    config = GitConfig(vision_config=dict(image_size=32, patch_size=8, **SMALL), vocab_size=len(WORDS),
                       max_position_embeddings=64, bos_token_id=CLS, eos_token_id=SEP, pad_token_id=PAD, **SMALL)
    torch.manual_seed(0)
    model = GitForCausalLM(config)
    _keep_to_words(model, CLS, SEP)
    model.save_pretrained(directory)
    word_tokenizer("[CLS]", "[SEP]", cls_token="[CLS]", sep_token="[SEP]").save_pretrained(directory)
    image_processor(directory, 32)
    return Path(directory)


def dual_encoder(directory: Path, kind: str = "clip") -> Path:
    """CLIP, SigLIP, SigLIP 2 or ALIGN with a word-level tokenizer."""
    import transformers as tf

    text = dict(vocab_size=len(WORDS), max_position_embeddings=16, pad_token_id=PAD, **SMALL)
    vision = dict(image_size=32, patch_size=8, **SMALL)
    if kind == "clip":
        config = tf.CLIPConfig(text_config={**text, "bos_token_id": BOS, "eos_token_id": EOS},
                               vision_config=vision, projection_dim=24)
        model = tf.CLIPModel
    elif kind == "siglip":
        config = tf.SiglipConfig(text_config=text, vision_config=vision)
        model = tf.SiglipModel
    elif kind == "siglip2":
        config = tf.Siglip2Config(text_config=text, vision_config={**SMALL, "patch_size": 8, "num_patches": 16})
        model = tf.Siglip2Model
    else:  # align: an EfficientNet image tower and a BERT text tower
        config = tf.AlignConfig(
            text_config=dict(vocab_size=len(WORDS), max_position_embeddings=16, pad_token_id=PAD, **SMALL),
            vision_config=dict(image_size=32, hidden_dim=64, width_coefficient=0.1, depth_coefficient=0.1,
                               num_hidden_layers=4), projection_dim=32)
        model = tf.AlignModel
    torch.manual_seed(0)
    model(config).save_pretrained(directory)
    word_tokenizer(cls_token="[CLS]", sep_token="[SEP]").save_pretrained(directory)
    if kind == "siglip2":  # patches of the image at its own aspect ratio, at most 16 of them
        from transformers import Siglip2ImageProcessor

        Siglip2ImageProcessor(patch_size=8, max_num_patches=16).save_pretrained(directory)
    else:
        image_processor(directory, 32)
    return Path(directory)


def entry(repository: Path, name: str, task: str, path: Path, family: str = "transformers", **extra) -> Path:
    """Write `<repository>/<name>.model.yaml`."""
    import yaml

    repository.mkdir(parents=True, exist_ok=True)
    target = repository / f"{name}.model.yaml"
    target.write_text(yaml.safe_dump({"task": task, "family": family, "path": str(path), **extra}))
    return target


def clap(directory: Path) -> Path:
    """CLAP at 16 kHz with a 1 s window and 16 mel bands (the public ones: 48 kHz, 10 s, 64)."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    config = ClapConfig(
        text_config=dict(vocab_size=len(WORDS), max_position_embeddings=64, pad_token_id=PAD, **SMALL),
        audio_config=dict(depths=[1, 1], num_attention_heads=[2, 2], hidden_size=32, patch_embeds_hidden_size=16,
                          window_size=4, spec_size=64, num_mel_bins=16, patch_stride=[4, 4], patch_size=4,
                          enable_fusion=False),
        projection_dim=16, projection_hidden_size=32)
    torch.manual_seed(0)
    ClapModel(config).save_pretrained(directory)
    word_tokenizer(cls_token="[CLS]", sep_token="[SEP]").save_pretrained(directory)
    ClapFeatureExtractor(feature_size=16, sampling_rate=16000, max_length_s=1, fft_window_size=512, hop_length=250,
                         truncation="rand_trunc", padding="repeatpad").save_pretrained(directory)
    return Path(directory)


# --- image-text-to-text models (the generic captioning family) -------------------------------------
IMAGE_TOKEN = "<image>"


def _with_image_token(*args, **kwargs):
    """The word tokenizer plus an `<image>` special token (id len(WORDS)), as multimodal tokenizers have."""
    tokenizer = word_tokenizer(*args, **kwargs)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    return tokenizer


def blip2(directory: Path) -> Path:
    """BLIP-2: ViT -> Q-Former (4 learned queries) -> an OPT language model."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    config = Blip2Config(
        vision_config=dict(image_size=32, patch_size=8, **SMALL),
        qformer_config=dict(vocab_size=len(WORDS), max_position_embeddings=32, encoder_hidden_size=32,
                            cross_attention_frequency=1, **SMALL),
        text_config=dict(model_type="opt", vocab_size=len(WORDS) + 1, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, ffn_dim=37, word_embed_proj_dim=32, max_position_embeddings=64,
                         bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD),
        num_query_tokens=4, image_token_index=len(WORDS))
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config)
    _keep_to_words(model, BOS, EOS)
    model.save_pretrained(directory)
    Blip2Processor(BlipImageProcessor(size={"height": 32, "width": 32}), _with_image_token(),
                   num_query_tokens=4).save_pretrained(directory)
    return Path(directory)


def pix2struct(directory: Path) -> Path:
    """Pix2Struct: variable-resolution 8x8 patches (at most 16) -> a T5-style decoder with cross-attention."""
    from transformers import (
        Pix2StructConfig, Pix2StructForConditionalGeneration, Pix2StructImageProcessor, Pix2StructProcessor,
    )

    small = dict(hidden_size=32, d_kv=16, d_ff=37, num_heads=2)
    config = Pix2StructConfig(
        text_config=dict(vocab_size=len(WORDS), num_layers=1, decoder_start_token_id=BOS, pad_token_id=PAD,
                         eos_token_id=EOS, **small),
        vision_config=dict(hidden_size=32, d_kv=16, d_ff=37, num_attention_heads=2, num_hidden_layers=1,
                           patch_embed_hidden_size=8 * 8 * 3, seq_len=16),
        decoder_start_token_id=BOS, pad_token_id=PAD, eos_token_id=EOS)
    torch.manual_seed(0)
    model = Pix2StructForConditionalGeneration(config)
    _keep_to_words(model, BOS, EOS)
    model.save_pretrained(directory)
    Pix2StructProcessor(Pix2StructImageProcessor(patch_size={"height": 8, "width": 8}, max_patches=16),
                        word_tokenizer()).save_pretrained(directory)
    return Path(directory)


def llava(directory: Path) -> Path:
    """LLaVA: a CLIP vision tower (16 patches, [CLS] dropped) -> projector -> a Llama language model."""
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    config = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", image_size=32, patch_size=8, num_hidden_layers=2,
                           **{k: v for k, v in SMALL.items() if k != "num_hidden_layers"}),
        text_config=dict(model_type="llama", vocab_size=len(WORDS) + 1, max_position_embeddings=64, head_dim=16,
                         num_key_value_heads=2, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, **SMALL),
        image_token_index=len(WORDS), vision_feature_layer=-1)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    _keep_to_words(model, BOS, EOS)
    model.save_pretrained(directory)
    LlavaProcessor(CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                   _with_image_token(), patch_size=8, vision_feature_select_strategy="default",
                   num_additional_image_tokens=1).save_pretrained(directory)
    return Path(directory)


def paligemma(directory: Path) -> Path:
    """PaliGemma: a SigLIP vision tower (16 patch tokens) -> projector -> a Gemma language model; its processor
    adds the <image> token and PaliGemma's location and segmentation tokens to the word tokenizer."""
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor, SiglipImageProcessor

    images = SiglipImageProcessor(size={"height": 32, "width": 32})
    images.image_seq_length = 16
    processor = PaliGemmaProcessor(images, word_tokenizer())
    config = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", image_size=32, patch_size=8, **SMALL),
        text_config=dict(model_type="gemma", vocab_size=len(processor.tokenizer), head_dim=16, num_key_value_heads=1,
                         max_position_embeddings=64, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, **SMALL),
        image_token_index=processor.image_token_id, projection_dim=32, hidden_size=32)
    torch.manual_seed(0)
    model = PaliGemmaForConditionalGeneration(config)
    _keep_to_words(model, BOS, EOS)
    model.generation_config.suppress_tokens += list(range(len(WORDS), len(processor.tokenizer)))
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return Path(directory)
