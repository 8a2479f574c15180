"""Explanations on the captioning service: why the captioner said a word, and the ShapesWorld judge served
for analysis (ExplainCaption, ExplainJudge, VisualizeJudge).

The judge is served here rather than in a service of its own: it is a 64x64 image classifier of the same
world the captioner reads, its analyses (CAM, Grad-CAM, class visualisation, filters, patches) share this
service's image decoding, device and explanation lane, and a separate process would add a port, a
container, a health check and a client entry for a 0.3 MB model used only for analysis.

SYN_CAPTIONING_JUDGE names the judge checkpoint (default `judge`; empty = not loaded, the judge RPCs answer
FAILED_PRECONDITION). All work runs in the service's ExplainLane (services/runtime/explain.py).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import torch
from synesthesia.tensors import to_tensor
from synesthesia.v1 import common_pb2, explain_pb2

from models.explain import explain, render
from models.explain.hf import HFCaptionWordTarget, hf_word_positions
from models.explain.targets import CaptionWordTarget, JudgeTarget
from models.explain.visualise import class_visualisation, filter_pictures, first_conv, top_patches
from models.images import images_to_batch
from models.judge import HEADS, load_judge
from models.shapesworld import EVAL_SEEDS, render_scene
from services.runtime import failed_precondition, image_from_message, invalid_argument
from services.runtime.explain import (
    ExplainLane,
    check_methods_apply,
    explanation,
    method_names,
    model_view,
    options_from,
)

CAPTION_METHODS = ("grad_cam", "guided_grad_cam", "guided_backprop", "gradient", "gradient_squared", "occlusion",
                   "attention", "attention_rollout")
# Hugging Face captioning families ExplainCaption explains (models/explain/hf.py): name -> the token that
# starts a teacher-forced sequence, read from the model's config.
HF_START_TOKEN = {
    "vision-encoder-decoder": lambda config: config.decoder_start_token_id,
    "blip": lambda config: config.text_config.bos_token_id,
    "git": lambda config: config.bos_token_id,
}
JUDGE_METHODS = ("cam", "grad_cam", "guided_grad_cam", "guided_backprop", "gradient", "gradient_squared",
                 "occlusion")
MAX_CAPTION_WORDS = 50
DEFAULT_STEPS = 200
DEFAULT_SCENES = 256
DEFAULT_TOP_K = 16
MAX_TOP_K = 64
# Held-out scenes for maximally activating patches: a block of EVAL_SEEDS apart from the measurements'.
PATCH_SCENE_SEED = EVAL_SEEDS.start + 800_000
_SCENES: dict[int, np.ndarray] = {}


def patch_scenes(count: int, budget) -> np.ndarray:
    """uint8 [count,64,64,3] one-object held-out scenes (rendered once per process, then reused)."""
    for seed in range(PATCH_SCENE_SEED, PATCH_SCENE_SEED + count):
        if seed not in _SCENES:
            if (seed - PATCH_SCENE_SEED) % 32 == 0:
                budget.check_time("scene_count")
            _SCENES[seed] = render_scene(seed, objects=1).image
    return np.stack([_SCENES[s] for s in range(PATCH_SCENE_SEED, PATCH_SCENE_SEED + count)])


class CaptioningExplainer:
    def __init__(self, servicer) -> None:
        self.servicer = servicer
        self.settings = servicer.settings
        self.device = servicer.device
        # The registry's live list of model batchers (filled when the models load).
        self.lane = ExplainLane(self.settings, "captioning", servicer.models.batchers)
        self.judge_name = servicer.own.judge
        self.judge = None

    def load(self) -> None:
        if self.judge_name:
            self.judge = load_judge(self.device, directory=self.settings.checkpoint_dir)

    async def close(self) -> None:
        await self.lane.close()

    async def _image(self, message, size: int) -> tuple[np.ndarray, torch.Tensor]:
        def decode():
            image = np.asarray(image_from_message(message, "image", self.settings))
            return image, images_to_batch([image], size).to(self.device)

        return await asyncio.to_thread(decode)

    @staticmethod
    def _run_methods(names, target, pixels, options, image) -> list[explain_pb2.Explanation]:
        out = []
        for name in names:
            options.budget.check_time("methods")
            started = time.perf_counter()
            heat = explain(name, target, pixels, options)[0].numpy()
            out.append(explanation(name, heat, image, time.perf_counter() - started))
        return out

    # --- ExplainCaption ---------------------------------------------------------------------

    async def explain_caption(self, request) -> explain_pb2.ExplainCaptionResponse:
        from services.captioning.servicer import DEFAULT_MAX_LENGTH, CaptionJob

        servicer = self.servicer
        names = method_names(request.methods, CAPTION_METHODS)
        options = options_from(request.options)
        served = servicer.models.get(request.model)
        model_name = served.name
        if served.details.family != "builtin":
            return await self._explain_hf_caption(request, served, names, options)
        captioner = served.model.model
        image, pixels = await self._image(request.image, captioner.config.image_size)
        caption = request.caption.strip()
        if not caption:
            decoded = await served.submit(CaptionJob(pixels[0].cpu(), 1, DEFAULT_MAX_LENGTH))
            caption = decoded.text
        words = caption.split()
        if not words or len(words) > MAX_CAPTION_WORDS:
            raise invalid_argument("caption", f"needs 1 to {MAX_CAPTION_WORDS} words, got {len(words)}")
        unknown = [w for w in words if w not in captioner.vocab.index]
        if unknown:
            raise invalid_argument("caption", f"words not in the model's vocabulary: {', '.join(unknown[:5])}")
        if not 0 <= request.word_index < len(words):
            raise invalid_argument("word_index", f"{request.word_index} is outside 0..{len(words) - 1} for "
                                                 f"caption {caption!r}")

        def work(budget):
            options.budget = budget
            target = CaptionWordTarget.of(captioner, caption, request.word_index)
            check_methods_apply(names, target, model_name, served.details.family)
            with torch.no_grad():
                log_p = float(target(pixels)[0])
            return log_p, self._run_methods(names, target, pixels, options, image)

        log_p, explanations = await self.lane.run(work)
        return explain_pb2.ExplainCaptionResponse(caption=caption, word=words[request.word_index],
                                                  log_probability=log_p, explanations=explanations,
                                                  model=model_name)

    async def _explain_hf_caption(self, request, served, names, options) -> explain_pb2.ExplainCaptionResponse:
        """ExplainCaption for a Hugging Face captioner: the word's tokens teacher-forced after the family's
        start token, the methods on the model's own pixel values mapped back to [0, 1]."""
        from services.captioning.servicer import DEFAULT_MAX_LENGTH

        family = served.details.family
        captioner = served.model
        start = HF_START_TOKEN.get(family)
        if start is None or not hasattr(captioner, "_forward"):
            raise failed_precondition("model", f"{served.name!r} is a {family} model; ExplainCaption explains the "
                                               f"built-in captioners and the Hugging Face families "
                                               f"{', '.join(HF_START_TOKEN)} (docs/explanations.md)")
        start_id = start(captioner.model.config)

        def decode():
            picture = image_from_message(request.image, "image", self.settings)
            return np.asarray(picture), captioner.prepare(picture)

        image, prepared = await asyncio.to_thread(decode)
        caption = request.caption.strip()
        if caption:
            if len(caption.split()) > MAX_CAPTION_WORDS:
                raise invalid_argument("caption", f"needs 1 to {MAX_CAPTION_WORDS} words, got {len(caption.split())}")
            ids = captioner.tokenizer(caption, add_special_tokens=False)["input_ids"]
            eos = captioner.eos_id if captioner.eos_id is not None else start_id
            sequence = [start_id, *ids, eos]
        else:  # the model's own greedy caption, exactly as generated (special tokens in it stay its context)
            def generate(_budget):
                with torch.no_grad():
                    return captioner._generate(prepared[None].to(captioner.device), 1, DEFAULT_MAX_LENGTH)[0].tolist()

            sequence = await self.lane.run(generate)
        text, words, positions = hf_word_positions(captioner, sequence, request.word_index)
        if not words:
            raise invalid_argument("caption", "has no word the model's tokenizer knows")
        if not 0 <= request.word_index < len(words):
            raise invalid_argument("word_index", f"{request.word_index} is outside 0..{len(words) - 1} for "
                                                 f"caption {text!r}")

        def work(budget):
            options.budget = budget
            target = HFCaptionWordTarget.of(captioner, sequence, positions, words[request.word_index])
            check_methods_apply(names, target, served.name, family)
            pixels = HFCaptionWordTarget.images_of(prepared[None].to(captioner.device), target.mean, target.std)
            with torch.no_grad():
                log_p = float(target(pixels)[0])
            return log_p, self._run_methods(names, target, pixels, options, model_view(captioner, pixels, image))

        log_p, explanations = await self.lane.run(work)
        return explain_pb2.ExplainCaptionResponse(caption=text, word=words[request.word_index], log_probability=log_p,
                                                  explanations=explanations, model=served.name)

    # --- the judge --------------------------------------------------------------------------

    def _judge(self):
        self.servicer.models.check_loaded()
        if self.judge is None:
            raise failed_precondition("request", "the judge is not loaded here (SYN_CAPTIONING_JUDGE is empty)")
        return self.judge

    @staticmethod
    def _head_and_class(head: str, class_name: str, required: bool) -> tuple[str, int | None]:
        head = head or "shape"
        if head not in HEADS:
            raise invalid_argument("head", f"unknown head {head!r}; heads: {', '.join(HEADS)}")
        if not class_name:
            if required:
                raise invalid_argument("class_name", f"required; {head} classes: {', '.join(HEADS[head])}")
            return head, None
        if class_name not in HEADS[head]:
            raise invalid_argument("class_name", f"unknown {head} class {class_name!r}; "
                                                 f"classes: {', '.join(HEADS[head])}")
        return head, HEADS[head].index(class_name)

    async def explain_judge(self, request) -> explain_pb2.ExplainJudgeResponse:
        judge = self._judge()
        names = method_names(request.methods, JUDGE_METHODS)
        options = options_from(request.options)
        head, class_index = self._head_and_class(request.head, request.class_name, required=False)
        image, pixels = await self._image(request.image, judge.config.image_size)

        def work(budget):
            options.budget = budget
            with torch.no_grad():
                probs = {k: v.softmax(1)[0] for k, v in judge.net(pixels).items()}
            predictions = [explain_pb2.JudgePrediction(head=k, class_name=HEADS[k][int(p.argmax())],
                                                       probability=float(p.max())) for k, p in probs.items()]
            chosen = int(probs[head].argmax()) if class_index is None else class_index
            target = JudgeTarget.of(judge.net, head, chosen)
            return predictions, chosen, self._run_methods(names, target, pixels, options, image)

        predictions, chosen, explanations = await self.lane.run(work)
        return explain_pb2.ExplainJudgeResponse(predictions=predictions, head=head,
                                                class_name=HEADS[head][chosen], explanations=explanations)

    def layers(self) -> list[tuple[str, torch.nn.Module, int]]:
        """The judge's convolutional blocks: (name, module, channels)."""
        net = self._judge().net
        return [(f"trunk.{i}", block, block[0].out_channels) for i, block in enumerate(net.trunk)]

    async def visualize_judge(self, request) -> explain_pb2.VisualizeJudgeResponse:
        judge = self._judge()
        layers = self.layers()
        layer_names = [f"{name}:{channels}" for name, _, channels in layers]
        kind = request.kind
        if kind == explain_pb2.JUDGE_VISUALIZATION_CLASS:
            head, class_index = self._head_and_class(request.head, request.class_name, required=True)
            steps = request.steps or DEFAULT_STEPS

            def work(budget):
                target = JudgeTarget.of(judge.net, head, class_index)
                found = class_visualisation(target, judge.config.image_size, steps, budget, seed=request.seed,
                                            device=self.device)
                picture = render.upscale(render.to_uint8_image(found.image.numpy()), 4)
                return explain_pb2.VisualizeJudgeResponse(picture_png=render.png_bytes(picture),
                                                          values=to_tensor(found.image.numpy()), scores=to_tensor(np.asarray(found.scores)),
                                                          layers=layer_names)
        elif kind == explain_pb2.JUDGE_VISUALIZATION_FIRST_LAYER_FILTERS:
            def work(budget):
                conv = first_conv(judge.net)
                tiles = [render.upscale(f, 8) for f in filter_pictures(conv)]
                picture = render.grid(tiles, 8)
                return explain_pb2.VisualizeJudgeResponse(picture_png=render.png_bytes(picture),
                                                          values=to_tensor(conv.weight.detach().cpu().numpy()),
                                                          layers=layer_names)
        elif kind == explain_pb2.JUDGE_VISUALIZATION_TOP_PATCHES:
            by_name = {name: (module, channels) for name, module, channels in layers}
            layer_name = request.layer or layers[-1][0]
            if layer_name not in by_name:
                raise invalid_argument("layer", f"unknown layer {request.layer!r}; layers: {', '.join(by_name)}")
            module, channels = by_name[layer_name]
            if not 0 <= request.channel < channels:
                raise invalid_argument("channel", f"{request.channel} is outside 0..{channels - 1} for {layer_name}")
            count = request.scene_count or DEFAULT_SCENES
            top_k = request.top_k or DEFAULT_TOP_K
            if not 1 <= top_k <= MAX_TOP_K:
                raise invalid_argument("top_k", f"{request.top_k} is outside 1..{MAX_TOP_K} (0 = {DEFAULT_TOP_K})")

            def work(budget):
                budget.check_scenes(count, "scene_count")
                scenes = patch_scenes(count, budget)
                batch = images_to_batch(list(scenes), judge.config.image_size).to(self.device)
                found = top_patches(judge.net, judge.net, module, request.channel, batch, top_k, budget)
                patches, tiles = [], []
                for patch in found:
                    x0, y0, x1, y1 = patch.box
                    crop = scenes[patch.scene][y0:y1, x0:x1]
                    patches.append(explain_pb2.ActivatingPatch(
                        patch_png=render.png_bytes(crop), activation=patch.activation,
                        scene_seed=PATCH_SCENE_SEED + patch.scene,
                        box=common_pb2.BoundingBox(x_min_px=x0, y_min_px=y0, x_max_px=x1, y_max_px=y1)))
                    framed = np.full((64, 64, 3), 255, np.uint8)
                    framed[:y1 - y0, :x1 - x0] = crop
                    tiles.append(render.upscale(framed, 2))
                picture = render.grid(tiles, 8)
                return explain_pb2.VisualizeJudgeResponse(picture_png=render.png_bytes(picture), patches=patches,
                                                          layers=layer_names)
        else:
            raise invalid_argument("kind", "choose CLASS, FIRST_LAYER_FILTERS or TOP_PATCHES")
        return await self.lane.run(work)
