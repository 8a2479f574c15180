"""Train the built-in `captioning` checkpoint on ShapesWorld (one- and two-object scenes, both domains).

    python -m models.captioning.train            # the shipped checkpoint (make train-captioning)
    python -m models.captioning.train --fresh    # ignore run/captioning/ (an interrupted run resumes)
    python -m models.captioning.train --smoke    # a few steps into a temporary directory

Read top to bottom: build the vocabulary from training captions; each step renders
a fresh batch of training scenes (scene seeds follow from the step, so a resumed
run sees the same data), runs the decoder with teacher forcing on the taught
caption (data.py) and minimises cross-entropy plus the doubly stochastic
attention penalty. At the end the held-out metrics of evaluate.py (beam search,
pointing game, most-frequent-caption baseline) go into the manifest.
"""

from __future__ import annotations

import dataclasses
import sys
import time

import torch

from models.captioning import evaluate
from models.captioning.checkpoint import CHECKPOINT_NAME
from models.captioning.data import build_vocabulary, encode_batch, render_batch
from models.captioning.network import Captioner, CaptionerConfig, caption_loss, count_parameters
from models.shapesworld import EVAL_SEEDS, TRAIN_SEEDS
from models.training import save_checkpoint, seed_everything, train_loop
from models.training_cli import parse_training_args



@dataclasses.dataclass
class Options:
    steps: int = 1600
    batch_size: int = 48
    lr: float = 3e-3
    weight_decay: float = 1e-4
    # lambda of the doubly stochastic penalty sum_i (1 - sum_t alpha_ti)^2. Small: with 64 grid cells
    # and about 10 words the penalty cannot reach 0, and it pushes the later words of a noun phrase off
    # an object the earlier ones already covered (pointing game, 1000 held-out scenes: overlap 0.81 at
    # 0.002, 0.86 at 0.0002, 0.89 at 0; see docs/captioning.md).
    attention_weight: float = 0.0002
    grad_clip: float = 5.0
    # Held-out scenes for the periodic (greedy) check and for the final metrics (beam search).
    monitor_scenes: int = 200
    monitor_every: int = 200
    eval_scenes: int = 1000
    eval_beam_size: int = 3
    save_every: int = 100
    seed: int = 0


def main(argv: list[str] | None = None) -> int:
    run = parse_training_args(argv, module="models.captioning.train", description=__doc__, options=Options,
                              name=CHECKPOINT_NAME, smoke=dict(steps=4, batch_size=8, monitor_scenes=8,
                                                               monitor_every=2, eval_scenes=8, save_every=2))
    options, run_dir, checkpoint_dir, command = run.options, run.run_dir, run.checkpoint_dir, run.command
    torch.set_num_threads(run.args.threads)
    seed_everything(options.seed)
    started = time.time()

    vocab = build_vocabulary()
    config = CaptionerConfig(vocabulary=vocab.tokens)
    model = Captioner(config)
    print(f"vocabulary: {len(vocab)} tokens; parameters: {count_parameters(model):,}", flush=True)
    optimiser = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=options.lr, total_steps=options.steps,
                                                   pct_start=0.1)
    # Training scenes: step s uses seeds [offset + s*B, offset + (s+1)*B) of TRAIN_SEEDS, never repeated.
    offset = options.seed * options.steps * options.batch_size
    last_seed = offset + options.steps * options.batch_size
    if last_seed > len(TRAIN_SEEDS):
        raise SystemExit(f"{options.steps} steps of {options.batch_size} need more than the training seeds")

    def batches(start: int):
        for step in range(start, options.steps):
            first = TRAIN_SEEDS[offset + step * options.batch_size]
            images, captions = render_batch(range(first, first + options.batch_size), config.image_size)
            yield images, encode_batch(captions, vocab)

    def step_fn(batch, step: int) -> dict[str, float]:
        images, captions = batch
        logits, alphas = model(images, captions)
        loss, parts = caption_loss(logits, alphas, captions, vocab.pad, options.attention_weight)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
        optimiser.step()
        return parts

    monitor = evaluate.eval_scenes(options.monitor_scenes, offset=options.eval_scenes)

    def monitor_fn(step: int) -> dict[str, float]:
        metrics = evaluate.evaluate(model, monitor, beam_size=1)
        return {k: metrics[k] for k in ("bleu_4", "attribute_accuracy", "pointing_centre") if k in metrics}

    training_config = {"model": config.to_dict(), "training": dataclasses.asdict(options)}
    result = train_loop(
        name=CHECKPOINT_NAME, model=model, optimizer=optimiser, batches=batches, step_fn=step_fn,
        total_steps=options.steps, scheduler=schedule, eval_fn=monitor_fn, eval_every=options.monitor_every,
        save_every=options.save_every, run_dir=run_dir, resume=not run.fresh, config=training_config,
    )
    train_seconds = time.time() - started

    model.eval()
    scenes = evaluate.eval_scenes(options.eval_scenes)
    with torch.inference_mode():
        metrics = evaluate.evaluate(model, scenes, beam_size=options.eval_beam_size)
    base = evaluate.baseline(scenes)
    metrics.update({f"baseline_{k}": v for k, v in base.items() if k != "caption"})
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["train_steps"] = result.steps
    for key, value in metrics.items():
        print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}", flush=True)
    print(f"  baseline caption: {base['caption']!r}", flush=True)
    path = save_checkpoint(
        CHECKPOINT_NAME, model, config={**training_config, "baseline_caption": base["caption"]},
        metrics=metrics, command=command,
        data_seeds={"train": [offset, last_seed], "eval": [EVAL_SEEDS[0], EVAL_SEEDS[0] + options.eval_scenes],
                    "monitor": [EVAL_SEEDS[0] + options.eval_scenes,
                                EVAL_SEEDS[0] + options.eval_scenes + options.monitor_scenes]},
        directory=checkpoint_dir,
    )
    print(f"saved {path} after {time.time() - started:.0f}s (training {train_seconds:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
