"""A transformers VisionEncoderDecoderModel from a local directory, served next to the built-in.

The test builds a tiny randomly initialised ViT + GPT-2 model and a word-level
tokenizer locally (no downloads), saves them to tmp_path, starts the service with
SYN_CAPTIONING_HF_DIR pointing there and calls it over gRPC. The served caption
must equal what the same model's own `generate` gives in-process.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from models.shapesworld import EVAL_SEEDS, VOCABULARY, render_scene
from synesthesia.tensors import from_tensor
from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2
from tests.captioning.conftest import OPTIONS, caption_request, encode, stream_request

pytestmark = pytest.mark.slow
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]
IMAGE = render_scene(EVAL_SEEDS[36000]).image


def build_tiny_model(directory) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        GenerationConfig, GPT2Config, PreTrainedTokenizerFast, ViTConfig, ViTImageProcessor,
        VisionEncoderDecoderConfig, VisionEncoderDecoderModel,
    )

    words = SPECIAL + list(VOCABULARY)
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>")
    encoder = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    decoder = GPT2Config(vocab_size=len(words), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 1, 0, 2
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(config=config)
    # A random model likes to repeat <s>; keep it to words so there is something to check.
    model.generation_config = GenerationConfig(decoder_start_token_id=1, bos_token_id=1, eos_token_id=2,
                                               pad_token_id=0, suppress_tokens=[0, 1, 3], min_new_tokens=3)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf") / "tiny-vit-gpt2"
    build_tiny_model(directory)
    return directory


def in_process_caption(directory, image: np.ndarray, beams: int, limit: int) -> str:
    from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

    model = VisionEncoderDecoderModel.from_pretrained(directory, attn_implementation="eager").eval()
    pixels = AutoImageProcessor.from_pretrained(directory)(images=Image.fromarray(image), return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(pixel_values=pixels["pixel_values"], num_beams=beams, max_new_tokens=limit)
    return AutoTokenizer.from_pretrained(directory).decode(ids[0], skip_special_tokens=True)


def test_served_next_to_the_builtin(service_process, model_dir):
    server = service_process("captioning", env={"SYN_CAPTIONING_HF_DIR": str(model_dir)})
    with grpc.insecure_channel(server.target, options=OPTIONS) as channel:
        stub = captioning_pb2_grpc.CaptioningStub(channel)
        models = {m.name: m for m in stub.ListModels(captioning_pb2.ListCaptioningModelsRequest(), timeout=30).models}
        assert set(models) == {"captioning", "tiny-vit-gpt2"}
        hf = models["tiny-vit-gpt2"]
        assert hf.backend == common_pb2.MODEL_BACKEND_TRANSFORMERS and not hf.is_default
        assert models["captioning"].is_default and hf.parameter_count > 10_000

        data = encode(Image.fromarray(IMAGE).resize((90, 70)))
        for beams in (1, 3):
            response = stub.Caption(caption_request(data, beams, 6, model="tiny-vit-gpt2", attention=True),
                                    timeout=60)
            assert response.model == "tiny-vit-gpt2"
            expected = in_process_caption(model_dir, np.asarray(Image.fromarray(IMAGE).resize((90, 70))), beams, 6)
            assert response.caption == expected
            assert 3 <= len(response.words) <= 6
            assert all(w.text in VOCABULARY for w in response.words)
            assert all(np.isfinite(w.log_probability) and w.log_probability <= 0 for w in response.words)
            for word in response.words:
                heat = from_tensor(word.attention.values)
                assert heat.shape == (4, 4)  # 32 px / 8 px patches, [CLS] dropped
                assert heat.sum() == pytest.approx(1.0, abs=1e-4) and (heat >= 0).all()
                assert (word.attention.image_width_px, word.attention.image_height_px) == (90, 70)
            streamed = list(stub.StreamCaption(stream_request(data, beams, 6, model="tiny-vit-gpt2"), timeout=60))
            assert [m.word.text for m in streamed] == [w.text for w in response.words]
            assert streamed[-1].is_final

        # The built-in still answers by default, and bad options are still refused.
        assert stub.Caption(caption_request(data), timeout=60).model == "captioning"
        with pytest.raises(grpc.RpcError) as caught:
            stub.Caption(caption_request(data, beam_size=12, model="tiny-vit-gpt2"), timeout=60)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
