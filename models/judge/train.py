"""Train the reference judge (make train-judge).

    python -m models.judge.train                 # the shipped checkpoint: models/checkpoints/judge.safetensors
    python -m models.judge.train --steps 500     # shorter
    python -m models.judge.train --smoke         # a few steps into a temp dir (used by the tests)

Read top to bottom: render a pool of single-object training scenes (each layout in both domains)
from TRAIN_SEEDS once; every step draws a batch from the pool by a generator seeded with the step
and perturbs it (models/judge/augment.py); the loss is the sum of the four heads' cross-entropies;
every `--eval-every` steps the heads are scored on held-out EVAL_SEEDS scenes; at the end the full
evaluation (models/judge/evaluate.py) goes into the manifest with the checkpoint. Interrupted runs
continue from run/judge/state.pt when started again with the same options (``--fresh`` restarts).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from models.judge import CHECKPOINT_NAME
from models.judge.augment import augment
from models.judge.evaluate import LABEL_KEYS, accuracies, evaluate, render_eval_set
from models.judge.network import JudgeConfig, JudgeNet
from models.shapesworld import EVAL_SEEDS, TRAIN_SEEDS, ShapesWorldDataset
from models.training import (
    command_line, parameter_count, passive_openmp_or_reexec, save_checkpoint, seed_everything, train_loop,
)

# Held-out seeds for the periodic evaluation during training (the final evaluation uses EVAL_SEEDS[:count]).
MONITOR_SEEDS = EVAL_SEEDS[500_000:]


def render_pool(layouts: int, progress: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """uint8 [2 * layouts, 3, 64, 64]: TRAIN_SEEDS[:layouts] as single-object scenes, each in both domains."""
    from tqdm import tqdm

    dataset = ShapesWorldDataset(TRAIN_SEEDS[:layouts], objects=1,
                                 keys=("day_image", "night_image", "shape", "colour", "size"))
    images = torch.empty((2 * layouts, 3, 64, 64), dtype=torch.uint8)
    labels = {k: torch.empty(2 * layouts, dtype=torch.int64) for k in LABEL_KEYS}
    for i in tqdm(range(layouts), desc="rendering", disable=not progress, mininterval=2.0):
        item = dataset[i]
        for d, key in enumerate(("day_image", "night_image")):
            j = 2 * i + d
            images[j] = (item[key] * 255).round().to(torch.uint8)
            for k in ("shape", "colour", "size"):
                labels[k][j] = item[k][0]
            labels["domain"][j] = d
    return images, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.judge.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--layouts", type=int, default=20_000, help="training layouts (x2 domains) in the pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-count", type=int, default=2000, help="held-out scenes per domain, final evaluation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="default: models/checkpoints")
    parser.add_argument("--run-dir", type=Path, default=None, help="resume state; default: run/judge")
    parser.add_argument("--fresh", action="store_true", help="ignore saved resume state")
    parser.add_argument("--smoke", action="store_true", help="a few steps on a tiny pool, written to a temp dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if argv is None:
        passive_openmp_or_reexec()
    command = command_line() if argv is None else "python -m models.judge.train " + " ".join(argv)
    if args.smoke:
        args.steps, args.batch_size, args.layouts, args.eval_every, args.eval_count = 4, 8, 16, 2, 16
        scratch = Path(tempfile.mkdtemp(prefix="judge-smoke-"))
        args.checkpoint_dir = args.checkpoint_dir or scratch
        args.run_dir = args.run_dir or scratch / "run"

    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    started = time.time()
    progress = not args.quiet

    torch.set_num_threads(1)  # rendering is numpy; tiny torch ops only lose from more threads
    pool_images, pool_labels = render_pool(args.layouts, progress)
    monitor = [render_eval_set(MONITOR_SEEDS[:max(16, args.eval_count // 4)], d) for d in ("day", "night")]
    torch.set_num_threads(args.threads)
    print(f"rendered {len(pool_images)} training images in {time.time() - started:.0f} s", flush=True)

    config = JudgeConfig()
    model = JudgeNet(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps,
                                                    pct_start=0.15)

    def batches(start: int) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        for step in range(start, args.steps):
            g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
            index = torch.randint(len(pool_images), (args.batch_size,), generator=g)
            images = augment(pool_images[index].float() / 255.0, g)
            yield images, {k: v[index] for k, v in pool_labels.items()}

    def step_fn(batch, step: int) -> dict[str, float]:
        images, labels = batch
        out = model(images)
        losses = {k: F.cross_entropy(out[k], labels[k], label_smoothing=0.05) for k in LABEL_KEYS}
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    def eval_fn(step: int) -> dict[str, float]:
        metrics = {}
        for domain, (images, labels) in zip(("day", "night"), monitor):
            for k, v in accuracies(model, images, labels).items():
                metrics[f"{domain}_{k}"] = v
        return metrics

    loop_started = time.time()
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = train_loop(
        name=CHECKPOINT_NAME, model=model, optimizer=optimizer, scheduler=scheduler, batches=batches,
        step_fn=step_fn, total_steps=args.steps, eval_fn=eval_fn, eval_every=args.eval_every,
        save_every=max(1, args.eval_every), run_dir=args.run_dir, resume=not args.fresh,
        config={"network": config.to_dict(), **{k: options[k] for k in ("steps", "batch_size", "lr", "layouts", "seed")}},
        progress=progress,
    )
    rendering_seconds = loop_started - started
    train_minutes = (rendering_seconds + result.seconds) / 60  # rendering + every session of the loop

    model.eval()
    metrics = evaluate(model, args.eval_count)
    metrics.update({"training_minutes": round(train_minutes, 2), "steps": args.steps,
                    "monitor_history": result.history})
    path = save_checkpoint(
        CHECKPOINT_NAME, model, config=config.to_dict(), metrics=metrics, command=command,
        data_seeds={"train": [TRAIN_SEEDS.start, TRAIN_SEEDS.start + args.layouts],
                    "eval": [EVAL_SEEDS.start, EVAL_SEEDS.start + args.eval_count],
                    "monitor": [MONITOR_SEEDS.start, MONITOR_SEEDS.start + max(16, args.eval_count // 4)]},
        directory=args.checkpoint_dir,
    )
    summary = {k: v for k, v in metrics.items() if k != "monitor_history"}
    print(json.dumps(summary, indent=2), flush=True)
    print(f"wrote {path} ({parameter_count(model)} parameters, {path.stat().st_size / 1e6:.2f} MB) "
          f"after {train_minutes:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
