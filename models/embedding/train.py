"""Train the built-in `embedding` checkpoint on ShapesWorld (one- and two-object scenes, both domains).

    python -m models.embedding.train            # the shipped checkpoint (make train-embedding)
    python -m models.embedding.train --fresh    # ignore run/embedding/ (an interrupted run resumes)
    python -m models.embedding.train --smoke    # a few steps into a temporary directory

Read top to bottom: each step renders a fresh batch of training scenes (the seeds
follow from the step and so do the caption choices, so a resumed run sees the same
data), pairs each image with one of its reference captions (data.py), embeds both
and minimises the symmetric InfoNCE loss with a learnable temperature, plus
optionally the VSE++ hardest-negative hinge, with the batch's false negatives
masked out. At the end the Recall@K of evaluate.py on 1,000 held-out pairs goes
into the manifest.
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from models.embedding import evaluate
from models.embedding.checkpoint import CHECKPOINT_NAME
from models.embedding.data import describes, render_pairs, training_captions
from models.embedding.network import EmbeddingConfig, JointEmbedding, contrastive_loss, count_parameters
from models.embedding.tokenizer import SPECIALS
from models.shapesworld import EVAL_SEEDS, TRAIN_SEEDS, VOCABULARY
from models.training import save_checkpoint, seed_everything, train_loop
from models.training_cli import parse_training_args



@dataclasses.dataclass
class Options:
    steps: int = 500
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    dim: int = 128
    # Weight of the VSE++ hardest-negative hinge added to InfoNCE (0 = InfoNCE alone). With 0.5,
    # monitor Recall@1 (text->image) at step 200 of 600 was 0.77 against 0.69 for InfoNCE alone.
    vse_weight: float = 0.5
    vse_margin: float = 0.2
    # Share of pairs taught with the canonical caption; the rest use another reference caption.
    canonical_share: float = 0.5
    grad_clip: float = 5.0
    monitor_pairs: int = 500
    monitor_every: int = 100
    eval_pairs: int = 1000
    save_every: int = 50
    seed: int = 0


class StepBatches(Dataset):
    """Item k is the whole batch of step `start + k`: rendered in a DataLoader worker, off the training thread."""

    def __init__(self, options: Options, start: int, offset: int, image_size: int) -> None:
        self.options, self.start, self.offset, self.image_size = options, start, offset, image_size

    def __len__(self) -> int:
        return self.options.steps - self.start

    def __getitem__(self, k: int):
        step, batch = self.start + k, self.options.batch_size
        first = self.offset + step * batch
        pairs = render_pairs(TRAIN_SEEDS[first:first + batch], self.image_size)
        rng = np.random.default_rng((self.options.seed, step))
        texts = training_captions(pairs.references, rng, self.options.canonical_share)
        return pairs.images, texts, describes(texts, pairs.references)


def main(argv: list[str] | None = None) -> int:
    run = parse_training_args(
        argv, module="models.embedding.train", description=__doc__, options=Options, name=CHECKPOINT_NAME,
        smoke=dict(steps=4, batch_size=16, monitor_pairs=16, monitor_every=2, eval_pairs=32, save_every=2),
        extra=lambda parser: parser.add_argument("--workers", type=int, default=1,
                                                 help="DataLoader processes rendering batches (0 = inline)"))
    options, args, command = run.options, run.args, run.command
    run_dir, checkpoint_dir = run.run_dir, run.checkpoint_dir
    torch.set_num_threads(args.threads)
    seed_everything(options.seed)
    started = time.time()

    config = EmbeddingConfig(vocabulary=SPECIALS + VOCABULARY, dim=options.dim)
    model = JointEmbedding(config)
    print(f"vocabulary: {len(config.vocabulary)} tokens; parameters: {count_parameters(model):,}", flush=True)
    optimiser = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=options.lr, total_steps=options.steps,
                                                   pct_start=0.1)
    # Step s uses seeds [offset + s*B, offset + (s+1)*B) of TRAIN_SEEDS, never repeated.
    offset = options.seed * options.steps * options.batch_size
    last_seed = offset + options.steps * options.batch_size
    if last_seed > len(TRAIN_SEEDS):
        raise SystemExit(f"{options.steps} steps of {options.batch_size} need more than the training seeds")

    def batches(start: int):
        data = StepBatches(options, start, offset, config.image_size)
        loader = DataLoader(data, batch_size=None, shuffle=False, num_workers=args.workers,
                            prefetch_factor=2 if args.workers else None, persistent_workers=False)
        yield from loader

    def step_fn(batch, step: int) -> dict[str, float]:
        images, texts, false_negatives = batch
        ids, lengths = model.tokenizer.batch(texts)
        loss, parts = contrastive_loss(model.encode_images(images), model.encode_ids(ids, lengths), model.scale(),
                                       false_negatives, options.vse_weight, options.vse_margin)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
        optimiser.step()
        return {**parts, "temperature": float(1.0 / model.scale().detach())}

    # Monitoring pairs come after the final evaluation's pairs, so the reported numbers stay untouched.
    monitor = evaluate.eval_pairs(options.monitor_pairs, offset=options.eval_pairs, size=config.image_size)

    def monitor_fn(step: int) -> dict[str, float]:
        metrics = evaluate.evaluate(model, monitor)
        return {k: metrics[k] for k in ("t2i_recall@1", "i2t_recall@1", "t2i_recall@10", "single_t2i_recall@5")}

    training_config = {"model": config.to_dict(), "training": dataclasses.asdict(options)}
    result = train_loop(
        name=CHECKPOINT_NAME, model=model, optimizer=optimiser, batches=batches, step_fn=step_fn,
        total_steps=options.steps, scheduler=schedule, eval_fn=monitor_fn, eval_every=options.monitor_every,
        save_every=options.save_every, run_dir=run_dir, resume=not run.fresh, config=training_config,
    )
    train_seconds = result.seconds

    model.eval()
    pairs = evaluate.eval_pairs(options.eval_pairs, size=config.image_size)
    metrics = evaluate.evaluate(model, pairs)
    metrics["temperature"] = float(1.0 / model.scale().detach())
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["train_steps"] = result.steps
    for key, value in metrics.items():
        print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}", flush=True)
    path = save_checkpoint(
        CHECKPOINT_NAME, model, config=training_config, metrics=metrics, command=command,
        data_seeds={"train": [offset, last_seed], "eval": [EVAL_SEEDS[0], EVAL_SEEDS[0] + options.eval_pairs],
                    "monitor": [EVAL_SEEDS[0] + options.eval_pairs,
                                EVAL_SEEDS[0] + options.eval_pairs + options.monitor_pairs]},
        directory=checkpoint_dir,
    )
    print(f"saved {path} after {time.time() - started:.0f}s (training {train_seconds:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
