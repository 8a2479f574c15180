"""Train the built-in `text2image` checkpoint: GAN-INT-CLS on single-object day scenes.

    python -m models.generation.train_text2image          # the shipped checkpoint (make train-text2image)
    python -m models.generation.train_text2image --fresh  # ignore run/text2image/ (by default a run resumes)
    python -m models.generation.train_text2image --smoke  # a few steps into a temporary directory

Read top to bottom: render the training scenes; pretrain the caption encoder
on what each caption says and freeze it; then alternate discriminator and
generator steps (Reed et al. 2016, Algorithm 1, with the GAN-INT
interpolation term) in models.training's resumable loop. Every `--eval-every`
steps the moving average of the generator is judged on the 48
"a {size} {colour} {shape}" prompts with selection-only noise; the best one
ships, and the metrics it reports come from evaluate_text2image on held-out
evaluation scenes with other noise.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.generation import evaluate_text2image as evaluation
from models.generation.text2image import (
    CHECKPOINT_NAME, Discriminator, LatentEncoder, Text2Image, Text2ImageConfig,
)
from models.generation.text_encoder import IGNORE, split_words
from models.shapesworld import COLOURS, POSITIONS, SHAPES, SIZES, TRAIN_SEEDS, VOCABULARY, render_scene
from models.training import parameter_count, save_checkpoint, seed_everything, train_loop
from models.training_cli import parse_training_args

ATTRIBUTES = {"shape": SHAPES, "colour": tuple(COLOURS), "size": SIZES}


@dataclasses.dataclass(frozen=True)
class Options:
    scenes: int = 8000
    encoder_steps: int = 400
    steps: int = 2400
    batch_size: int = 32
    lr: float = 4e-4
    lr_d: float = 4e-4
    # Supervised warm start of D's image trunk and attribute heads on real images, so the
    # generator gets a meaningful attribute signal from its first step.
    d_pretrain_steps: int = 300
    d_pretrain_lr: float = 2e-3
    # Weight of the GAN-INT term: G must also fool D on captions halfway between two others.
    interpolation_weight: float = 1.0
    # Auxiliary attribute heads on D (0 = plain GAN-INT-CLS); see text2image.Discriminator.
    aux_weight: float = 1.0
    # One-sided label smoothing for real/matching pairs keeps D from saturating early.
    real_label: float = 0.9
    # Reconstruction through a latent encoder (0 = off); see text2image.LatentEncoder.
    reconstruction_weight: float = 10.0
    kl_weight: float = 0.01
    # Object pixels count this much more in the reconstruction (an object covers 2-15 % of the canvas).
    object_weight: float = 10.0
    # Gaussian noise (in [-1, 1] units) added to every image D sees: the generator paints flat
    # backgrounds, real ones carry sensor noise, and D should not win on that alone.
    instance_noise: float = 0.05
    ema_decay: float = 0.99
    # The moving average starts here; earlier weights are far from anything worth keeping.
    ema_start: int = 200
    eval_every: int = 200
    selection_samples: int = 2
    seed: int = 0


# --- captions ---------------------------------------------------------------------------------

def caption_attributes(text: str) -> dict[str, str | None]:
    """What a single-object caption states: shape, colour, size, position phrase (None when absent)."""
    words = split_words(text)
    stated: dict[str, str | None] = {key: next((w for w in words if w in values), None)
                                     for key, values in ATTRIBUTES.items()}
    tail = " ".join(words[words.index(stated["shape"]) + 1:]) if stated["shape"] else ""
    stated["position"] = tail if tail in POSITIONS else None
    return stated


def compose(stated: dict[str, str | None]) -> str:
    return " ".join(p for p in ("a", stated["size"], stated["colour"], stated["shape"], stated["position"]) if p)


def mismatch(stated: dict[str, str | None], rng: random.Random) -> str:
    """The same caption with one stated attribute changed: a hard negative, so D has to check every
    word (a random other caption would usually differ in several at once)."""
    choices = {**ATTRIBUTES, "position": POSITIONS}
    key = rng.choice([k for k in choices if stated[k] is not None])
    return compose({**stated, key: rng.choice([v for v in choices[key] if v != stated[key]])})


def all_captions() -> list[str]:
    """Every single-object caption the grammar allows (sizes and position phrases are optional)."""
    return sorted({compose({"size": size, "colour": colour, "shape": shape, "position": position})
                   for size in (None, *SIZES) for colour in COLOURS for shape in SHAPES
                   for position in (None, *POSITIONS)})


def attribute_targets(captions: list[str], with_position: bool = False) -> torch.Tensor:
    """Attribute ids each caption states, [N, 3] (or [N, 4] with the position); IGNORE where unstated."""
    keys = {**ATTRIBUTES, **({"position": POSITIONS} if with_position else {})}
    return torch.tensor([
        [list(values).index(stated[key]) if (stated := caption_attributes(c))[key] is not None else IGNORE
         for key, values in keys.items()]
        for c in captions
    ])


def attribute_loss(logits: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    return sum(F.cross_entropy(logits[key], targets[:, i], ignore_index=IGNORE) for i, key in enumerate(ATTRIBUTES))


# --- data -------------------------------------------------------------------------------------

def render_training_set(count: int) -> tuple[torch.Tensor, list[list[str]], torch.Tensor, torch.Tensor]:
    """uint8 images [N, 64, 64, 3], each scene's reference captions, its object's attribute ids [N, 3]
    and its object's mask [N, 64, 64]."""
    images, captions, targets, masks = [], [], [], []
    for seed in itertools.islice(iter(TRAIN_SEEDS), count):
        scene = render_scene(seed, size=64, objects=1, domain="day")
        images.append(torch.from_numpy(np.ascontiguousarray(scene.image)))
        captions.append(list(scene.captions))
        masks.append(torch.from_numpy(np.ascontiguousarray(scene.mask)))
        obj = scene.objects[0]
        targets.append([list(values).index(getattr(obj, key)) for key, values in ATTRIBUTES.items()])
    return torch.stack(images), captions, torch.tensor(targets), torch.stack(masks)


def to_model_range(images_uint8: torch.Tensor) -> torch.Tensor:
    return images_uint8.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


# --- stage 1: the caption encoder -------------------------------------------------------------

def pretrain_encoder(model: Text2Image, captions: list[str], steps: int, rng: random.Random) -> float:
    """Teach the encoder to read shape, colour, size and position; returns its accuracy over `captions`."""
    targets = attribute_targets(captions, with_position=True)
    ids, lengths = model.tokenizer.batch([model.tokenizer.encode(c)[0] for c in captions])
    encoder = model.text_encoder
    optimiser = torch.optim.Adam(encoder.parameters(), lr=3e-3)
    keys = [*ATTRIBUTES, "position"]
    for _ in range(steps):
        batch = torch.tensor(rng.sample(range(len(captions)), min(64, len(captions))))
        logits = encoder.attribute_logits(encoder(ids[batch], lengths[batch]))
        loss = sum(F.cross_entropy(logits[k], targets[batch, i], ignore_index=IGNORE) for i, k in enumerate(keys))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        logits = encoder.attribute_logits(encoder(ids, lengths))
    predicted = torch.stack([logits[k].argmax(1) for k in keys], dim=1)
    stated = targets != IGNORE
    return float((predicted == targets)[stated].float().mean())


def pretrain_discriminator(discriminator: Discriminator, images: torch.Tensor, targets: torch.Tensor,
                           options: Options, rng: random.Random) -> float:
    """Train D's image trunk and attribute heads as a plain classifier of real images for a few
    hundred steps (the GAN's own aux loss continues this); returns accuracy over the last 20 batches."""
    parameters = [*discriminator.image.parameters(), *discriminator.attribute_heads.parameters()]
    optimiser = torch.optim.Adam(parameters, lr=options.d_pretrain_lr)
    discriminator.train()
    correct = []
    for step in range(options.d_pretrain_steps):
        chosen = [rng.randrange(len(images)) for _ in range(64)]
        logits = discriminator.attributes(discriminator.features(to_model_range(images[chosen])))
        loss = attribute_loss(logits, targets[chosen])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step >= options.d_pretrain_steps - 20:
            predicted = torch.stack([logits[k].argmax(1) for k in ATTRIBUTES], dim=1)
            correct.append((predicted == targets[chosen]).all(1).float().mean().item())
    return float(np.mean(correct)) if correct else 0.0


# --- stage 2: the GAN -------------------------------------------------------------------------

class GanTraining(nn.Module):
    """Everything the resumable loop saves: the shipped model (frozen encoder + generator), the
    discriminator, the generator's moving average, and the best moving average judged so far."""

    def __init__(self, config: Text2ImageConfig) -> None:
        super().__init__()
        self.model = Text2Image(config)
        self.discriminator = Discriminator(config)
        self.encoder = LatentEncoder(config)
        self.ema = copy.deepcopy(self.model.generator)
        self.best = copy.deepcopy(self.model.generator)
        self.register_buffer("best_score", torch.tensor(-1.0))
        self.register_buffer("best_step", torch.tensor(0))

    def update_ema(self, decay: float) -> None:
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.generator.parameters()):
                e.lerp_(p, 1.0 - decay)
            for e, b in zip(self.ema.buffers(), self.model.generator.buffers()):
                e.copy_(b)


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def main(argv: list[str] | None = None) -> int:
    run = parse_training_args(argv, module="models.generation.train_text2image", description=__doc__,
                              options=Options, name=CHECKPOINT_NAME,
                              smoke=dict(scenes=96, encoder_steps=5, d_pretrain_steps=3, steps=6, eval_every=3,
                                         batch_size=8))
    options, run_dir, checkpoint_dir, command = run.options, run.run_dir, run.checkpoint_dir, run.command

    torch.set_num_threads(run.args.threads)
    seed_everything(options.seed)
    started = time.time()
    images, scene_captions, scene_targets, scene_masks = render_training_set(options.scenes)
    print(f"rendered {len(images)} scenes in {time.time() - started:.0f}s", flush=True)

    config = Text2ImageConfig(
        vocabulary=tuple(VOCABULARY),
        attribute_classes={"shape": len(SHAPES), "colour": len(COLOURS), "size": len(SIZES),
                           "position": len(POSITIONS)},
    )
    training = GanTraining(config)
    model, generator, discriminator = training.model, training.model.generator, training.discriminator
    universe = sorted(set(all_captions()) | {c for caps in scene_captions for c in caps})
    encoder_accuracy = pretrain_encoder(model, universe, options.encoder_steps, random.Random(options.seed))
    print(f"caption encoder: {encoder_accuracy:.4f} attribute accuracy over {len(universe)} captions", flush=True)
    model.text_encoder.requires_grad_(False)

    # The encoder is frozen, so every caption's embedding is computed once.
    caption_index = {c: i for i, c in enumerate(universe)}
    with torch.no_grad():
        model.text_encoder.eval()
        table = model.embed(universe)
    stated_targets = attribute_targets(universe)
    scene_caption_ids = [[caption_index[c] for c in caps] for caps in scene_captions]
    scene_stated = [caption_attributes(caps[0]) for caps in scene_captions]

    # One Adam over two parameter groups is two Adams (its state is per parameter); each step
    # below clears the other network's gradients before stepping.
    encoder = training.encoder
    optimizer = torch.optim.Adam([{"params": [*generator.parameters(), *encoder.parameters()], "lr": options.lr},
                                  {"params": discriminator.parameters(), "lr": options.lr_d}], betas=(0.5, 0.999))

    def batches(start: int):
        # Each step's batch depends only on the step, so a resumed run sees the same data.
        for step in itertools.count(start):
            rng = random.Random(options.seed * 1_000_003 + step)
            chosen = [rng.randrange(len(images)) for _ in range(options.batch_size)]
            matching = [rng.choice(scene_caption_ids[i]) for i in chosen]
            wrong = [caption_index[mismatch(scene_stated[i], rng)] for i in chosen]
            yield to_model_range(images[chosen]), scene_targets[chosen], scene_masks[chosen], matching, wrong

    def only(*networks: nn.Module) -> None:
        keep = {id(p) for network in networks for p in network.parameters()}
        for group in optimizer.param_groups:
            for p in group["params"]:
                if id(p) not in keep:
                    p.grad = None

    def noisy(images: torch.Tensor) -> torch.Tensor:
        return images + options.instance_noise * torch.randn_like(images) if options.instance_noise else images

    def step_fn(batch, step: int) -> dict[str, float]:
        real, real_targets, real_masks, matching_ids, wrong_ids = batch
        matching, wrong = table[matching_ids], table[wrong_ids]
        noise = torch.randn(len(real), config.noise_dim)

        # Discriminator: real/matching -> 1; real/mismatching and fake/matching -> 0.
        fake = generator(noise, matching)
        real_features = discriminator.features(noisy(real))
        loss_d = bce(discriminator.score(real_features, matching), options.real_label) + 0.5 * (
            bce(discriminator.score(real_features, wrong), 0.0)
            + bce(discriminator(noisy(fake.detach()), matching), 0.0))
        if options.aux_weight:
            loss_d = loss_d + options.aux_weight * attribute_loss(discriminator.attributes(real_features),
                                                                  real_targets)
        optimizer.zero_grad(set_to_none=True)
        loss_d.backward()
        only(discriminator)
        optimizer.step()

        # Generator: fool D on matching captions, and on halfway interpolations between two captions.
        fake_features = discriminator.features(noisy(fake))
        loss_g = bce(discriminator.score(fake_features, matching), 1.0)
        if options.aux_weight:
            loss_g = loss_g + options.aux_weight * attribute_loss(discriminator.attributes(fake_features),
                                                                  stated_targets[matching_ids])
        if options.reconstruction_weight:
            mean, log_variance = encoder(real)
            code = mean + torch.randn_like(mean) * (0.5 * log_variance).exp()
            rebuilt = generator(code, matching)
            kl = 0.5 * (mean.pow(2) + log_variance.exp() - 1.0 - log_variance).sum(1).mean()
            weight = 1.0 + options.object_weight * real_masks[:, None].float()
            rebuilt_error = ((rebuilt - real).abs() * weight).mean() / weight.mean()
            loss_g = loss_g + options.reconstruction_weight * rebuilt_error + options.kl_weight * kl
        if options.interpolation_weight:
            mixed = 0.5 * (matching + matching[torch.randperm(len(matching))])
            interpolated = generator(torch.randn(len(real), config.noise_dim), mixed)
            loss_g = loss_g + options.interpolation_weight * bce(discriminator(noisy(interpolated), mixed), 1.0)
        optimizer.zero_grad(set_to_none=True)
        loss_g.backward()
        only(generator, encoder)
        optimizer.step()
        training.update_ema(options.ema_decay if step >= options.ema_start else 0.0)
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item()}

    if options.aux_weight and options.d_pretrain_steps:
        accuracy = pretrain_discriminator(discriminator, images, scene_targets, options, random.Random(options.seed))
        print(f"discriminator warm start: {accuracy:.3f} attribute accuracy on its last batches", flush=True)

    judge = evaluation.load_reference_judge()
    selection_prompts = evaluation.grid_prompts()

    def eval_fn(step: int) -> dict[str, float]:
        def generate(texts: list[str], noise: torch.Tensor) -> torch.Tensor:
            return (training.ema(noise, model.embed(texts)) + 1.0) / 2.0

        scores = evaluation.semantic_scores(generate, judge, selection_prompts, options.selection_samples,
                                            noise_seed=evaluation.SELECTION_NOISE_SEED)
        if scores["semantic_accuracy"] >= float(training.best_score):
            training.best.load_state_dict(training.ema.state_dict())
            training.best_score.fill_(scores["semantic_accuracy"])
            training.best_step.fill_(step)
        return {"selection_accuracy": scores["semantic_accuracy"], "best": float(training.best_score)}

    result = train_loop(
        name=CHECKPOINT_NAME, model=training, optimizer=optimizer, batches=batches, step_fn=step_fn,
        total_steps=options.steps, eval_fn=eval_fn, eval_every=options.eval_every, save_every=options.eval_every,
        run_dir=run_dir, resume=not run.fresh, config={**dataclasses.asdict(options), **config.to_dict()},
    )

    # Ship the best moving average with the frozen encoder.
    generator.load_state_dict(training.best.state_dict())
    model.eval()
    metrics = evaluation.evaluate(model, judge)
    metrics.update({
        "caption_encoder_accuracy": encoder_accuracy, "best_step": int(training.best_step),
        "selection_accuracy": float(training.best_score), "training_minutes": (time.time() - started) / 60,
    })
    print(json.dumps(metrics, indent=2), flush=True)
    path = save_checkpoint(
        CHECKPOINT_NAME, model, config=config.to_dict(), metrics=metrics, command=command,
        data_seeds={"train": [int(TRAIN_SEEDS.start), int(TRAIN_SEEDS.start) + options.scenes],
                    "eval": evaluation.eval_seed_range()},
        directory=checkpoint_dir,
    )
    print(f"wrote {path} ({parameter_count(model)} parameters) after {(time.time() - started) / 60:.1f} min; "
          f"selection history: {json.dumps(result.history)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
