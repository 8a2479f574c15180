"""Train the built-in `sketch2photo` checkpoint: pix2pix on ShapesWorld sketch -> day pairs.

    python -m models.generation.train_pix2pix            # the shipped checkpoint (make train-pix2pix)
    python -m models.generation.train_pix2pix --fresh    # ignore run/sketch2photo/ (by default a run resumes)
    python -m models.generation.train_pix2pix --smoke    # a few steps into a temporary directory

Read top to bottom: render the training pairs (TRAIN_SEEDS, 1 or 2 objects,
mirrored at random); train the L1-only baseline for the same number of steps
(`--baseline-steps 0` skips it); then train pix2pix, alternating a
conditional PatchGAN step (real pairs -> 1, generated pairs -> 0) and a
generator step (fool D + lambda * L1 to the target), with Adam (2e-4, beta1
0.5) and a learning rate that decays linearly to 0 over the second half, in
models.training's resumable loop. Every `--eval-every` steps PSNR on a few
held-out scenes is logged (monitoring only: the last weights ship). The
manifest records evaluate_image_to_image's metrics of the shipped weights,
measured through ImageToImageModel.translate, next to the baseline's.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.generation import evaluate_image_to_image as evaluation
from models.generation.image_to_image import ImageToImageModel
from models.generation.layers import gan_loss
from models.generation.pix2pix import CHECKPOINT_NAME, Pix2PixConfig, UNetGenerator, build_discriminator
from models.shapesworld import TRAIN_SEEDS, ShapesWorldDataset
from models.training import parameter_count, save_checkpoint, seed_everything, train_loop
from models.training_cli import parse_training_args


@dataclasses.dataclass(frozen=True)
class Options:
    scenes: int = 6000
    steps: int = 1000
    batch_size: int = 16
    # 15x pix2pix's 2e-4: the 12-minute budget allows ~1000 steps (measured: 2e-4 -> 21.0 dB at 2000 steps).
    lr: float = 3e-3
    beta1: float = 0.5
    l1_weight: float = 100.0
    gan_loss: str = "vanilla"
    # The learning rate decays linearly to 0 from this fraction of the steps on.
    decay_from: float = 0.5
    # The L1-only comparison is trained first, for this many steps (-1: as many as pix2pix, 0: skip).
    baseline_steps: int = -1
    eval_every: int = 250
    monitor_scenes: int = 64
    eval_scenes: int = evaluation.SKETCH2PHOTO_SCENES
    seed: int = 0


# --- data -------------------------------------------------------------------------------------

def render_pairs(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sketches, day photos) of the first `count` training scenes, uint8 [count, 64, 64, 3] each."""
    scenes = ShapesWorldDataset(range(TRAIN_SEEDS.start, TRAIN_SEEDS.start + count), size=64, domain="day",
                                keys=("sketch", "day_image"))
    items = [scenes[i] for i in range(len(scenes))]
    return tuple(torch.stack([as_uint8(item[key]) for item in items]) for key in ("sketch", "day_image"))


def as_uint8(image: torch.Tensor) -> torch.Tensor:
    """float [3, H, W] in [0, 1] (exact multiples of 1/255) -> uint8 [H, W, 3]."""
    return image.mul(255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous()


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def batches(sketches: torch.Tensor, photos: torch.Tensor, options: Options, start: int):
    """Step `step`'s batch depends only on the step (a resumed run sees the same data). Mirroring is
    the one augmentation ShapesWorld allows: triangles point up, so no vertical flips or rotations."""
    for step in itertools.count(start):
        rng = np.random.default_rng([options.seed, step])
        chosen = torch.from_numpy(rng.integers(0, len(sketches), options.batch_size))
        sketch, photo = to_model_range(sketches[chosen]), to_model_range(photos[chosen])
        flip = torch.from_numpy(rng.random(options.batch_size) < 0.5)
        sketch[flip], photo[flip] = sketch[flip].flip(-1), photo[flip].flip(-1)
        yield sketch, photo


# --- training -----------------------------------------------------------------------------------

class Pix2PixTraining(nn.Module):
    """What the resumable loop saves: the generator (shipped) and the discriminator."""

    def __init__(self, config: Pix2PixConfig, adversarial: bool) -> None:
        super().__init__()
        self.generator = UNetGenerator(config)
        self.discriminator = build_discriminator(config) if adversarial else None


def translator(generator: nn.Module) -> ImageToImageModel:
    """The serving wrapper around a generator being trained (shares its weights; eval mode)."""
    return ImageToImageModel(CHECKPOINT_NAME, generator, {}, next(generator.parameters()).device)


def train(name: str, config: Pix2PixConfig, options: Options, steps: int, adversarial: bool,
          data: tuple[torch.Tensor, torch.Tensor], run_dir: Path, resume: bool):
    """Train one variant (pix2pix, or the L1-only baseline with adversarial=False); returns
    (generator in eval mode, the loop's result)."""
    seed_everything(options.seed)
    training = Pix2PixTraining(config, adversarial)
    generator, discriminator = training.generator, training.discriminator
    groups = [{"params": generator.parameters()}]
    if adversarial:
        groups.append({"params": discriminator.parameters()})
    # One Adam over both networks is two Adams (its state is per parameter); each update below
    # steps only the parameters whose gradients it kept.
    optimizer = torch.optim.Adam(groups, lr=options.lr, betas=(options.beta1, 0.999))
    decay_start = int(steps * options.decay_from)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 1.0 if s < decay_start else max(0.0, (steps - s) / max(1, steps - decay_start)))

    def step_fn(batch, step: int) -> dict[str, float]:
        sketch, photo = batch
        fake = generator(sketch)
        scalars = {}
        if adversarial:
            real_logits = discriminator(torch.cat([sketch, photo], 1))
            fake_logits = discriminator(torch.cat([sketch, fake.detach()], 1))
            loss_d = 0.5 * (gan_loss(real_logits, True, options.gan_loss) + gan_loss(fake_logits, False,
                                                                                   options.gan_loss))
            optimizer.zero_grad(set_to_none=True)
            loss_d.backward()
            optimizer.step()  # only D has gradients
            scalars["loss_d"] = loss_d.item()
        loss_l1 = (fake - photo).abs().mean()
        loss_g = options.l1_weight * loss_l1
        if adversarial:
            loss_g = loss_g + gan_loss(discriminator(torch.cat([sketch, fake], 1)), True, options.gan_loss)
        optimizer.zero_grad(set_to_none=True)
        loss_g.backward()
        if adversarial:
            for p in discriminator.parameters():
                p.grad = None
        optimizer.step()
        scalars.update({"l1": loss_l1.item(), "loss_g": loss_g.item()})
        return scalars

    def eval_fn(step: int) -> dict[str, float]:
        metrics = evaluation.sketch2photo_metrics(translator(generator).translate, options.monitor_scenes)
        return {"monitor_psnr_db": metrics["psnr_db"], "monitor_l1": metrics["l1"]}

    sketches, photos = data
    result = train_loop(
        name=name, model=training, optimizer=optimizer, scheduler=scheduler,
        batches=lambda start: batches(sketches, photos, options, start), step_fn=step_fn, total_steps=steps,
        eval_fn=eval_fn, eval_every=options.eval_every, save_every=options.eval_every, run_dir=run_dir,
        resume=resume, config={**dataclasses.asdict(options), **config.to_dict(), "adversarial": adversarial},
    )
    return generator.eval(), result


def main(argv: list[str] | None = None) -> int:
    run = parse_training_args(argv, module="models.generation.train_pix2pix", description=__doc__,
                              options=Options, config=Pix2PixConfig, name=CHECKPOINT_NAME,
                              smoke=dict(scenes=32, steps=4, batch_size=4, eval_every=2, monitor_scenes=4,
                                         eval_scenes=8, baseline_steps=2))
    options, config, args = run.options, run.config, run.args
    run_dir, checkpoint_dir, command = run.run_dir, run.checkpoint_dir, run.command

    torch.set_num_threads(args.threads)
    started = time.time()
    data = render_pairs(options.scenes)
    print(f"rendered {options.scenes} training pairs in {time.time() - started:.0f}s", flush=True)

    metrics: dict[str, float] = {}
    baseline_steps = options.steps if options.baseline_steps < 0 else options.baseline_steps
    if baseline_steps:
        baseline, _ = train(f"{CHECKPOINT_NAME}-l1-only", config, options, baseline_steps, False, data,
                            run_dir / "l1_only", not run.fresh)
        scores = evaluation.sketch2photo_metrics(translator(baseline).translate, options.eval_scenes)
        metrics.update({"baseline_l1_only_psnr_db": scores["psnr_db"], "baseline_l1_only_l1": scores["l1"],
                        "baseline_l1_only_steps": baseline_steps})
        print(f"L1-only baseline: {json.dumps(scores)}", flush=True)

    generator, result = train(CHECKPOINT_NAME, config, options, options.steps, True, data, run_dir, not run.fresh)
    model = translator(generator)
    from models.judge import load_judge

    metrics = {
        **evaluation.sketch2photo_metrics(model.translate, options.eval_scenes, judge=load_judge()),
        **evaluation.sketch2photo_references(options.eval_scenes), **metrics,
        "steps": options.steps, "training_minutes": (time.time() - started) / 60,
        "pix2pix_loop_minutes": result.seconds / 60, "monitor_history": result.history,
    }
    print(json.dumps(metrics, indent=2), flush=True)
    path = save_checkpoint(
        CHECKPOINT_NAME, generator, config=config.to_dict(), metrics=metrics, command=command,
        data_seeds={"train": [int(TRAIN_SEEDS.start), int(TRAIN_SEEDS.start) + options.scenes],
                    "eval": evaluation.seed_range(options.eval_scenes)},
        directory=checkpoint_dir,
    )
    print(f"wrote {path} ({parameter_count(generator)} parameters) after {(time.time() - started) / 60:.1f} min",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
