"""The captioner's reported metrics on held-out ShapesWorld scenes (EVAL_SEEDS).

    python -m models.captioning.evaluate [--scenes 1000] [--beam-size 3]

Prints BLEU-1..4, attribute accuracies, the pointing game with its chance rates,
and the same caption metrics for the always-the-most-frequent-caption baseline.
See `scoring.py` for the definitions.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import torch

from models.images import images_to_batch
from models.captioning.decoding import beam_search
from models.captioning.network import Captioner
from models.captioning.scoring import PointingTally, SceneFacts, score_captions
from models.shapesworld import EVAL_SEEDS, TRAIN_SEEDS, render_scene
from models.shapesworld.dataset import render_item


def eval_scenes(count: int, offset: int = 0) -> list:
    """Held-out scenes, mixed object counts and domains."""
    return [render_scene(seed) for seed in EVAL_SEEDS[offset:offset + count]]


def caption_scenes(model: Captioner, scenes, beam_size: int = 3, batch_size: int = 64,
                   device: torch.device | str = "cpu"):
    out = []
    for i in range(0, len(scenes), batch_size):
        chunk = scenes[i:i + batch_size]
        images = images_to_batch([s.image for s in chunk], model.config.image_size).to(device)
        out.extend(beam_search(model, images, [beam_size] * len(chunk), [model.config.max_length] * len(chunk)))
    return out


def evaluate(model: Captioner, scenes, beam_size: int = 3, device: torch.device | str = "cpu") -> dict[str, float]:
    model.eval()
    decoded = caption_scenes(model, scenes, beam_size, device=device)
    facts = [SceneFacts.from_scene(s) for s in scenes]
    metrics = score_captions([d.text for d in decoded], facts)
    tally = PointingTally()
    for d, f in zip(decoded, facts):
        tally.add_caption([w.text for w in d.words], [w.attention for w in d.words], f)
    metrics.update(tally.summary())
    return metrics


def most_frequent_caption(count: int = 20000) -> str:
    """The most common canonical caption among the first `count` training scenes (no pixels rendered)."""
    captions = Counter(render_item(s, 64, None, None, ("caption",))["caption"] for s in TRAIN_SEEDS[:count])
    return captions.most_common(1)[0][0]


def baseline(scenes, count: int = 20000) -> dict[str, float]:
    caption = most_frequent_caption(count)
    metrics = score_captions([caption] * len(scenes), [SceneFacts.from_scene(s) for s in scenes])
    return {"caption": caption, **metrics}


def main(argv: list[str] | None = None) -> None:
    from models.captioning.checkpoint import load_captioner

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="captioning")
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = load_captioner(args.name)
    scenes = eval_scenes(args.scenes)
    with torch.inference_mode():
        metrics = evaluate(loaded.model, scenes, args.beam_size)
    print(json.dumps({"model": metrics, "most_frequent_caption_baseline": baseline(scenes)}, indent=2))


if __name__ == "__main__":
    main()
