"""Train the built-in `day2night` and `night2day` checkpoints: one CycleGAN on unpaired scenes.

    python -m models.generation.train_cyclegan            # the shipped checkpoints (make train-cyclegan)
    python -m models.generation.train_cyclegan --fresh    # ignore run/cyclegan/ (by default a run resumes)
    python -m models.generation.train_cyclegan --smoke    # a few steps into a temporary directory

Read top to bottom: render independent day scenes and night scenes from
disjoint training seeds (no scene appears in both domains, so nothing pairs
them); then alternate, as in the reference implementation, a generator step
(LSGAN loss of G: day -> night and F: night -> day against their critics,
+ lambda_cycle * (|F(G(x)) - x| + |G(F(y)) - y|), + the identity loss
lambda_identity * lambda_cycle * (|G(y) - y| + |F(x) - x|) when its weight is
not 0) and a critic step on real images and on fakes drawn from a pool of 50
earlier ones, with Adam (2e-4, beta1 0.5) and a learning rate decaying
linearly to 0 over the second half, in models.training's resumable loop.

One departure from the reference recipe, forced by the residual generators
(cyclegan.py), which start as the identity: the L1 terms come in late. At the
identity the cycle and identity losses are exactly 0 and their gradient does
not shrink near 0, so at full weight they hold G and F at the identity against
the critics (measured: judged domain accuracy still 0 after 450-500 steps with
the cycle loss at full weight from step 0, and after 250 steps with the
identity loss ramped up alongside the cycle weight). So the cycle weight ramps
up from 0 over the first 30 % of the steps, and the identity loss starts once
the translation is there (at 30 %) and ramps up to the reference weight
(0.5 x lambda_cycle) by 60 %.

Every `--eval-every` steps the judge's metrics on a few held-out scenes are
logged (monitoring only: the last weights ship). Both generators are saved,
each with its direction's metrics from evaluate_image_to_image, measured
through ImageToImageModel.translate.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import time

import numpy as np
import torch
from torch import nn

from models.generation import evaluate_image_to_image as evaluation
from models.generation.cyclegan import DIRECTIONS, KIND, CycleGANConfig, ResnetGenerator, build_discriminator
from models.generation.image_to_image import ImageToImageModel
from models.generation.layers import ImagePool, gan_loss
from models.shapesworld import TRAIN_SEEDS, ShapesWorldDataset
from models.training import parameter_count, save_checkpoint, seed_everything, train_loop
from models.training_cli import parse_training_args

FORWARD, BACKWARD = "day2night", "night2day"


@dataclasses.dataclass(frozen=True)
class Options:
    # Scenes per domain; day scenes use the first seeds, night scenes the next ones.
    scenes: int = 3000
    steps: int = 2500
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    cycle_weight: float = 10.0
    # The cycle weight ramps up linearly from 0 over this fraction of the steps (0: full weight
    # from the start); see the module docstring.
    cycle_warmup: float = 0.3
    # Relative to cycle_weight, as in the reference implementation; 0 = off.
    identity_weight: float = 0.5
    # The identity loss is off until this fraction of the steps, then ramps up linearly over
    # identity_warmup of them (0: full weight at once); see the module docstring.
    identity_from: float = 0.3
    identity_warmup: float = 0.3
    pool_size: int = 50
    gan_loss: str = "lsgan"
    # The learning rate decays linearly to 0 from this fraction of the steps on.
    decay_from: float = 0.5
    eval_every: int = 500
    monitor_scenes: int = 48
    eval_scenes: int = evaluation.CYCLEGAN_SCENES
    seed: int = 0


# --- data -------------------------------------------------------------------------------------

def render_domain(domain: str, first_seed: int, count: int) -> torch.Tensor:
    """uint8 [count, 64, 64, 3]: training scenes first_seed, ... rendered in `domain`."""
    scenes = ShapesWorldDataset(range(first_seed, first_seed + count), size=64, domain=domain, keys=("image",))
    return torch.stack([scenes[i]["image"].mul(255.0).round().to(torch.uint8).permute(1, 2, 0)
                        for i in range(len(scenes))])


def training_seeds(options: Options) -> dict[str, list[int]]:
    start = int(TRAIN_SEEDS.start)
    return {"day": [start, start + options.scenes], "night": [start + options.scenes, start + 2 * options.scenes]}


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def batches(day: torch.Tensor, night: torch.Tensor, options: Options, start: int):
    """Independent draws from each domain; step `step`'s batch depends only on the step. Mirroring
    only (triangles point up)."""
    for step in itertools.count(start):
        rng = np.random.default_rng([options.seed, step])
        out = []
        for images in (day, night):
            chosen = torch.from_numpy(rng.integers(0, len(images), options.batch_size))
            batch = to_model_range(images[chosen])
            flip = torch.from_numpy(rng.random(options.batch_size) < 0.5)
            batch[flip] = batch[flip].flip(-1)
            out.append(batch)
        yield tuple(out)


# --- training -----------------------------------------------------------------------------------

class CycleGANTraining(nn.Module):
    """What the resumable loop saves: both generators (shipped), both discriminators, both pools."""

    def __init__(self, config: CycleGANConfig, pool_size: int) -> None:
        super().__init__()
        self.day2night = ResnetGenerator(config)
        self.night2day = ResnetGenerator(config)
        self.night_critic = build_discriminator(config)  # real night vs day2night(day)
        self.day_critic = build_discriminator(config)  # real day vs night2day(night)
        shape = (3, config.image_size, config.image_size)
        self.fake_night_pool = ImagePool(pool_size, shape)
        self.fake_day_pool = ImagePool(pool_size, shape)

    def generators(self) -> list[nn.Module]:
        return [self.day2night, self.night2day]

    def critics(self) -> list[nn.Module]:
        return [self.night_critic, self.day_critic]


def translator(name: str, generator: nn.Module) -> ImageToImageModel:
    """The serving wrapper around a generator being trained (shares its weights; eval mode)."""
    return ImageToImageModel(name, generator, {}, next(generator.parameters()).device)


def ramp(step: int, start: float, length: float) -> float:
    """0 before `start`, then linearly up to 1 over `length` steps (at once when length is 0)."""
    if step < start:
        return 0.0
    return 1.0 if length <= 0 else min(1.0, (step - start) / length)


def cycle_l1(forward: ImageToImageModel, backward: ImageToImageModel, source: str, count: int) -> float:
    """|backward(forward(x)) - x| on held-out scenes in `source`, through the served rounding."""
    images, _, _ = evaluation.domain_scenes(source, count, None)
    there = evaluation.translate_uint8(forward.translate, images)
    back = evaluation.translate_uint8(backward.translate, there)
    return float(evaluation.l1(back, images).mean())


def main(argv: list[str] | None = None) -> int:
    run = parse_training_args(argv, module="models.generation.train_cyclegan", description=__doc__,
                              options=Options, config=CycleGANConfig, name=KIND,
                              smoke=dict(scenes=16, steps=4, eval_every=2, monitor_scenes=4, eval_scenes=8,
                                         pool_size=2))
    options, config, args = run.options, run.config, run.args
    run_dir, checkpoint_dir, command = run.run_dir, run.checkpoint_dir, run.command

    torch.set_num_threads(args.threads)
    seed_everything(options.seed)
    started = time.time()
    seeds = training_seeds(options)
    day, night = (render_domain(domain, seeds[domain][0], options.scenes) for domain in ("day", "night"))
    print(f"rendered {options.scenes} day and {options.scenes} night training scenes in "
          f"{time.time() - started:.0f}s", flush=True)

    training = CycleGANTraining(config, options.pool_size)
    g, f = training.day2night, training.night2day
    # One Adam over all four networks is four Adams (its state is per parameter); each update
    # below steps only the parameters whose gradients it kept.
    optimizer = torch.optim.Adam([*g.parameters(), *f.parameters(), *training.night_critic.parameters(),
                                  *training.day_critic.parameters()], lr=options.lr, betas=(options.beta1, 0.999))
    decay_start = int(options.steps * options.decay_from)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 1.0 if s < decay_start else max(0.0, (options.steps - s) / max(1, options.steps - decay_start)))
    critic_parameters = [p for critic in training.critics() for p in critic.parameters()]
    generator_parameters = [p for generator in training.generators() for p in generator.parameters()]

    def step_fn(batch, step: int) -> dict[str, float]:
        real_day, real_night = batch
        # Generators: fool both critics, come back through the cycle, leave the target domain alone.
        training.night_critic.requires_grad_(False)
        training.day_critic.requires_grad_(False)
        fake_night, fake_day = g(real_day), f(real_night)
        loss_gan = (gan_loss(training.night_critic(fake_night), True, options.gan_loss)
                    + gan_loss(training.day_critic(fake_day), True, options.gan_loss))
        loss_cycle = (f(fake_night) - real_day).abs().mean() + (g(fake_day) - real_night).abs().mean()
        cycle_weight = options.cycle_weight * ramp(step, 0, options.cycle_warmup * options.steps)
        loss_g = loss_gan + cycle_weight * loss_cycle
        identity_weight = options.identity_weight * options.cycle_weight * ramp(
            step, options.identity_from * options.steps, options.identity_warmup * options.steps)
        if identity_weight:
            loss_identity = (g(real_night) - real_night).abs().mean() + (f(real_day) - real_day).abs().mean()
            loss_g = loss_g + identity_weight * loss_identity
        optimizer.zero_grad(set_to_none=True)
        loss_g.backward()
        optimizer.step()  # only the generators have gradients
        training.night_critic.requires_grad_(True)
        training.day_critic.requires_grad_(True)

        # Critics: real -> 1, pooled fakes -> 0.
        pooled_night = training.fake_night_pool.query(fake_night)
        pooled_day = training.fake_day_pool.query(fake_day)
        loss_d = 0.5 * (gan_loss(training.night_critic(real_night), True, options.gan_loss)
                        + gan_loss(training.night_critic(pooled_night), False, options.gan_loss)
                        + gan_loss(training.day_critic(real_day), True, options.gan_loss)
                        + gan_loss(training.day_critic(pooled_day), False, options.gan_loss))
        optimizer.zero_grad(set_to_none=True)
        loss_d.backward()
        for p in generator_parameters:
            p.grad = None
        optimizer.step()
        return {"loss_gan": loss_gan.item(), "loss_cycle": loss_cycle.item(), "loss_d": loss_d.item()}

    del critic_parameters
    from models.judge import load_judge

    judge = load_judge()

    def eval_fn(step: int) -> dict[str, float]:
        out = {}
        for name, generator in ((FORWARD, g), (BACKWARD, f)):
            source, target = DIRECTIONS[name]
            scores = evaluation.direction_metrics(translator(name, generator).translate, source, target, judge,
                                                  options.monitor_scenes)
            out.update({f"{name}_{key}": scores[key] for key in
                        ("domain_accuracy", "colour_preserved", "shape_preserved", "l1_other_domain")})
        return out

    result = train_loop(
        name=KIND, model=training, optimizer=optimizer, scheduler=scheduler,
        batches=lambda start: batches(day, night, options, start), step_fn=step_fn, total_steps=options.steps,
        eval_fn=eval_fn, eval_every=options.eval_every, save_every=options.eval_every, run_dir=run_dir,
        resume=not run.fresh, config={**dataclasses.asdict(options), **config.to_dict()},
    )

    models = {FORWARD: translator(FORWARD, g.eval()), BACKWARD: translator(BACKWARD, f.eval())}
    common = {"steps": options.steps, "batch_size": options.batch_size,
              "training_minutes": (time.time() - started) / 60, "loop_minutes": result.seconds / 60}
    for name, model in models.items():
        source, target = DIRECTIONS[name]
        partner = models[BACKWARD if name == FORWARD else FORWARD]
        metrics = {
            **evaluation.direction_metrics(model.translate, source, target, judge, options.eval_scenes),
            **evaluation.direction_references(source, target, options.eval_scenes),
            "cycle_l1": cycle_l1(model, partner, source, options.eval_scenes),
            **common, "monitor_history": result.history,
        }
        print(f"{name}: {json.dumps({k: v for k, v in metrics.items() if k != 'monitor_history'}, indent=2)}",
              flush=True)
        path = save_checkpoint(
            name, model.network, config=config.to_dict(), metrics=metrics, command=command,
            data_seeds={"train_day": seeds["day"], "train_night": seeds["night"],
                        "eval": evaluation.seed_range(options.eval_scenes)},
            directory=checkpoint_dir,
        )
        print(f"wrote {path} ({parameter_count(model.network)} parameters)", flush=True)
    print(f"done after {(time.time() - started) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
