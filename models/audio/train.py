"""Train the built-in `localization` checkpoint on ShapesWorld audio-visual scenes.

    python -m models.audio.train            # the shipped checkpoint (make train-audio)
    python -m models.audio.train --fresh    # ignore run/localization/ (by default an interrupted run resumes)
    python -m models.audio.train --smoke    # a few steps into a temporary directory

Read top to bottom: render a pool of training scenes, then each step draws a
batch in which every image gets the sound of one of its objects (or of an
absent object, or silence / pure noise), and minimises

* a contrastive loss (Senocak et al. 2018): an image and a clip score the
  soft-max-pooled cosine map between them; each image must pick its own clip
  among the batch's clips and each clip its own image (InfoNCE both ways;
  pairs where the other image really holds that object are left out);
* optionally (`--mask-weight`, on by default) the supervised loss: per-location
  binary cross-entropy between the calibrated map and the sounding object's
  mask (all zeros for an absent object's sound, a uniform 0.5 for silence and
  noise, so that the map flattens when nothing sounds).

At the end the held-out metrics of evaluate.py are written into the manifest.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.audio import evaluate
from models.audio.data import ScenePool, signature_table, training_batch
from models.audio.network import LocalizationConfig, SoundLocalizer
from models.shapesworld import TRAIN_SEEDS
from models.training import save_checkpoint, seed_everything, train_loop
from models.training_cli import parse_training_args

CHECKPOINT_NAME = "localization"


@dataclasses.dataclass
class Options:
    scenes: int = 16000
    steps: int = 1200
    batch_size: int = 48
    lr: float = 2e-3
    weight_decay: float = 1e-4
    # Temperature of the InfoNCE softmax over clips / images.
    temperature: float = 0.1
    # Temperature of the soft-max pooling of a cosine map into one image-clip score.
    pool_temperature: float = 0.05
    contrastive_weight: float = 1.0
    mask_weight: float = 1.0
    absent_fraction: float = 0.1
    silent_fraction: float = 0.1
    # Extra weight of the silence / noise rows in the mask loss: how flat their map must be.
    silent_weight: float = 4.0
    eval_scenes: int = 500
    save_every: int = 100
    seed: int = 0


def pooled_scores(cosine: torch.Tensor, temperature: float) -> torch.Tensor:
    """[B, K, h, w] -> [B, K]: a smooth maximum over locations (the best-matching place decides)."""
    flat = cosine.flatten(2) / temperature
    return temperature * (torch.logsumexp(flat, dim=2) - math.log(flat.shape[2]))


def contrastive_loss(cosine: torch.Tensor, batch, options: Options) -> torch.Tensor:
    """InfoNCE in both directions over the rows whose clip belongs to their own image."""
    present = (batch.clip_identity >= 0) & (batch.clip_identity.unsqueeze(1) == batch.image_identities).any(1)
    if present.sum() < 2:
        return cosine.new_zeros(())
    scores = pooled_scores(cosine, options.pool_temperature) / options.temperature  # [images, clips]
    # holds[i, j]: image i contains clip j's object. Such pairs are not negatives.
    holds = (batch.image_identities.unsqueeze(1) == batch.clip_identity.view(1, -1, 1)).any(2)
    eye = torch.eye(len(scores), dtype=torch.bool)
    ignored = holds & ~eye
    rows = torch.nonzero(present).squeeze(1)
    image_to_clip = F.cross_entropy(scores[rows].masked_fill(ignored[rows], -1e4), rows)
    clip_to_image = F.cross_entropy(scores.t()[rows].masked_fill(ignored.t()[rows], -1e4), rows)
    return 0.5 * (image_to_clip + clip_to_image)


def mask_loss(model: SoundLocalizer, matched: torch.Tensor, targets: torch.Tensor, silent_weight: float) -> torch.Tensor:
    silent = torch.isnan(targets[:, 0, 0])
    weights = torch.where(silent, silent_weight, 1.0).view(-1, 1, 1).expand_as(targets)
    flat = torch.nan_to_num(targets, nan=0.5)
    return F.binary_cross_entropy_with_logits(model.logits(matched), flat, weight=weights)


def main(argv: list[str] | None = None) -> int:
    run = parse_training_args(argv, module="models.audio.train", description=__doc__, options=Options,
                              name=CHECKPOINT_NAME,
                              smoke=dict(scenes=64, steps=4, batch_size=8, eval_scenes=8, save_every=2))
    options, run_dir, checkpoint_dir, command = run.options, run.run_dir, run.checkpoint_dir, run.command

    torch.set_num_threads(run.args.threads)
    seed_everything(options.seed)
    started = time.time()

    seeds = list(TRAIN_SEEDS[: options.scenes])
    with tqdm(total=len(seeds), desc="render", mininterval=5, file=sys.stdout) as bar:
        pool = ScenePool.render(seeds, progress=bar.update)
    signatures = signature_table()

    config = LocalizationConfig()
    model = SoundLocalizer(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=options.lr, total_steps=options.steps,
                                                   pct_start=0.1)
    map_size = config.image_size // 2

    def batches(start: int):
        # Each step's batch depends only on (seed, step), so a resumed run sees the same data.
        for step in range(start, options.steps):
            rng = np.random.default_rng([options.seed, step])
            yield training_batch(pool, signatures, options.batch_size, map_size, rng,
                                 options.absent_fraction, options.silent_fraction)

    def step_fn(batch, step: int) -> dict[str, float]:
        cosine = model.all_pairs(model.prepare_images(batch.images), batch.clips)  # [B, B, h, w]
        matched = torch.diagonal(cosine).permute(2, 0, 1)  # [B, h, w]: image i with its own clip
        loss_c = contrastive_loss(cosine, batch, options)
        loss_m = mask_loss(model, matched, batch.targets, options.silent_weight)
        loss = options.contrastive_weight * loss_c + options.mask_weight * loss_m
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return {"contrastive": loss_c.item(), "mask": loss_m.item()}

    result = train_loop(
        name=CHECKPOINT_NAME, model=model, optimizer=optimiser, batches=batches, step_fn=step_fn,
        total_steps=options.steps, scheduler=schedule, save_every=options.save_every, run_dir=run_dir,
        resume=not run.fresh, config={**config.to_dict(), "training": dataclasses.asdict(options)},
    )
    train_seconds = time.time() - started

    model.eval()
    metrics = evaluate.evaluate(model, scenes=options.eval_scenes)
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["train_steps"] = result.steps
    print(evaluate.format_metrics(metrics), flush=True)
    path = save_checkpoint(
        CHECKPOINT_NAME, model,
        config={**config.to_dict(), "training": dataclasses.asdict(options)},
        metrics=metrics, command=command,
        data_seeds={"train": [int(seeds[0]), int(seeds[-1]) + 1],
                    "eval": evaluate.eval_seed_range(options.eval_scenes)},
        directory=checkpoint_dir,
    )
    print(f"saved {path} after {train_seconds:.0f}s (rendering, training and evaluation)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
