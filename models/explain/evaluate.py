"""Measure every explanation method on held-out ShapesWorld scenes with ground-truth masks.

    python -m models.explain.evaluate --scenes 200 --sanity-scenes 20 --pictures docs/explanations
    make explain-measure      # the embedding and localisation tables of docs/explanations.md, rewritten

For each model and method: the pointing game (the map's peak inside the mask of the object the score is
about), deletion and insertion AUC (metrics.py), and the cascading-randomisation sanity check (mean
Spearman rho between the trained model's map and the maps after randomising the top 1, 2, ... layers, and
rho once every layer is randomised). Baselines `random` and `centre` are maps that know nothing.

Cases (EVAL_SEEDS only, disjoint from training):
* judge: one-object scenes; score = the `shape` head's logit for the true shape; probability = its softmax.
* captioning: two-object scenes, canonical caption teacher-forced; score = log p(shape word of one object);
  probability = p(that word); mask = that object.
* embedding: two-object scenes, text = "a {size} {colour} {shape}" of one object; score = cosine(image,
  text); probability = softmax of the scaled cosines over the two objects' phrases (the named one against
  the distractor's); mask = the named object. The sanity check randomises the image tower only (the text
  embedding is the fixed query).
* localization: two-object scenes with their clip (one object sounds); score = the audio-visual score (peak
  cosine over locations); probability = its calibrated sigmoid; mask = the sounding object. The sanity check
  randomises the visual tower only.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.explain import metrics, render
from models.explain.methods import Options, explain
from models.explain.targets import CaptionWordTarget, JudgeTarget, MatchTarget, SoundTarget
from models.shapesworld import EVAL_SEEDS, SHAPES, render_scene

FIRST_SEED = EVAL_SEEDS.start + 700_000  # a block of held-out seeds no other evaluation in the repo reads
METHODS_BY_MODEL = {
    "judge": ("cam", "grad_cam", "guided_grad_cam", "guided_backprop", "gradient", "gradient_squared", "occlusion"),
    "captioning": ("attention", "grad_cam", "guided_grad_cam", "guided_backprop", "gradient", "gradient_squared",
                   "occlusion"),
    "embedding": ("grad_cam", "guided_grad_cam", "guided_backprop", "gradient", "gradient_squared", "occlusion"),
    "localization": ("grad_cam", "guided_grad_cam", "guided_backprop", "gradient", "gradient_squared",
                     "occlusion"),
}
# The part of each model the sanity check randomises: what the explained score reads the image with
# ("" = every layer).
SANITY_SCOPE = {"judge": "", "captioning": "", "embedding": "image_encoder", "localization": "visual"}
BASELINES = ("random", "centre")


@dataclass
class Case:
    image: torch.Tensor  # [3,H,W] in [0,1]
    mask: np.ndarray  # bool [H,W]
    target: object  # a Target
    probability: Callable[[torch.Tensor], torch.Tensor]
    picture: np.ndarray  # uint8 [H,W,3]
    label: str


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)


def judge_cases(net, count: int, first_seed: int = FIRST_SEED) -> Iterator[Case]:
    for seed in range(first_seed, first_seed + count):
        scene = render_scene(seed, objects=1)
        obj = scene.objects[0]
        target = JudgeTarget.of(net, "shape", SHAPES.index(obj.shape))
        yield Case(_tensor(scene.image), obj.mask, target,
                   lambda x, t=target: net(x)[t.head].softmax(1)[:, t.class_index], scene.image,
                   f"{obj.shape}")


def _told_apart(count: int, first_seed: int, key) -> Iterator[tuple[int, object]]:
    """`count` two-object scenes (with their index) whose objects differ by `key`: a word or text naming
    one object must not name both."""
    seed, made = first_seed, 0
    while made < count:
        scene = render_scene(seed, objects=2)
        seed += 1
        a, b = scene.objects
        if key(a) != key(b):
            yield made, scene
            made += 1


def caption_cases(captioner, count: int, first_seed: int = FIRST_SEED) -> Iterator[Case]:
    for made, scene in _told_apart(count, first_seed, lambda o: (o.colour, o.shape)):
        words = scene.captions[0].split()
        # Alternate between the two objects, so both the first and the second noun phrase are measured.
        obj = scene.objects[made % 2]
        index = next(i for i in range(1, len(words)) if words[i] == obj.shape and words[i - 1] == obj.colour)
        target = CaptionWordTarget.of(captioner, scene.captions[0], index)
        yield Case(_tensor(scene.image), obj.mask, target, lambda x, t=target: t(x).exp(), scene.image,
                   f"{scene.captions[0]} [{obj.shape}]")


def _phrase(obj) -> str:
    return f"a {obj.size} {obj.colour} {obj.shape}"


def match_cases(embedder, count: int, first_seed: int = FIRST_SEED) -> Iterator[Case]:
    for made, scene in _told_apart(count, first_seed, _phrase):
        a, b = scene.objects
        obj, other = (a, b) if made % 2 == 0 else (b, a)
        target = MatchTarget.of(embedder, _phrase(obj))
        with torch.no_grad():
            texts = embedder.encode_texts([_phrase(obj), _phrase(other)])

        def probability(x, texts=texts):
            return (embedder.scale() * embedder.encode_images(x) @ texts.T).softmax(1)[:, 0]

        yield Case(_tensor(scene.image), obj.mask, target, probability, scene.image,
                   f"{_phrase(obj)} (not {_phrase(other)})")


def sound_cases(localizer, count: int, first_seed: int = FIRST_SEED) -> Iterator[Case]:
    for seed in range(first_seed, first_seed + count):
        scene = render_scene(seed, objects=2)
        target = SoundTarget.of(localizer, torch.from_numpy(scene.audio).float())
        yield Case(_tensor(scene.image), scene.mask, target,
                   lambda x, t=target: torch.sigmoid(localizer.logits(t(x))), scene.image,
                   f"sound of the {scene.sounding_object.colour} {scene.sounding_object.shape}")


def _map(method: str, case: Case, options: Options, rng: np.random.Generator) -> np.ndarray:
    h, w = case.mask.shape
    if method == "random":
        return metrics.random_map(h, w, rng)
    if method == "centre":
        return metrics.centre_map(h, w)
    return explain(method, case.target, case.image[None], options)[0].numpy()


def measure(model_name: str, model, cases: list[Case], methods: tuple[str, ...], sanity_cases: int = 0,
            options: Options | None = None, seed: int = 0) -> dict[str, dict[str, float]]:
    """{method: {"pointing": .., "deletion": .., "insertion": .., "sanity_mean_rho": .., "sanity_final_rho": ..,
    "seconds_per_map": ..}} over `cases` (sanity on the first `sanity_cases`)."""
    options = options or Options()
    results: dict[str, dict[str, float]] = {}
    for method in (*methods, *BASELINES):
        rng = np.random.default_rng(seed)
        hits, deletion, insertion, seconds = [], [], [], 0.0
        for case in cases:
            started = time.perf_counter()
            heat = _map(method, case, options, rng)
            seconds += time.perf_counter() - started
            hits.append(metrics.pointing_hit(heat, case.mask))
            d, i = metrics.deletion_insertion(case.probability, case.image, heat, tie_rng=rng)
            deletion.append(d)
            insertion.append(i)
        row = {"pointing": float(np.mean(hits)), "deletion": float(np.mean(deletion)),
               "insertion": float(np.mean(insertion)), "seconds_per_map": seconds / max(1, len(cases))}
        if sanity_cases and method not in BASELINES:
            row.update(sanity(model, cases[:sanity_cases], method, options, SANITY_SCOPE.get(model_name, "")))
        results[method] = row
    return results


def sanity(model, cases: list[Case], method: str, options: Options, scope: str = "") -> dict[str, float]:
    """Cascading randomisation (of the layers under `scope`): mean rho over every step, and rho with every
    layer randomised."""
    trained = [explain(method, c.target, c.image[None], options)[0].numpy() for c in cases]
    per_step: list[float] = []
    final = 0.0
    for _, randomised in metrics.cascading_randomisation(model, scope=scope):
        rhos = []
        for case, reference in zip(cases, trained):
            target = _retarget(case.target, randomised)
            rhos.append(metrics.rank_correlation(reference, explain(method, target, case.image[None], options)[0].numpy()))
        final = float(np.mean(rhos))
        per_step.append(final)
    return {"sanity_mean_rho": float(np.mean(per_step)), "sanity_final_rho": final}


def _retarget(target, model):
    """The same target on another copy of the network (its layer looked up by name)."""
    import dataclasses

    layer_name = next(n for n, m in target.model.named_modules() if m is target.layer)
    return dataclasses.replace(target, model=model, layer=dict(model.named_modules())[layer_name])


def pictures(cases: list[Case], methods: tuple[str, ...], options: Options, scale: int = 1) -> np.ndarray:
    """One row per case: the scene, then each method's overlay."""
    tiles = []
    for case in cases:
        tiles.append(render.upscale(case.picture, scale))
        for method in methods:
            heat = explain(method, case.target, case.image[None], options)[0].numpy()
            tiles.append(render.upscale(render.overlay(case.picture, heat), scale))
    return render.grid(tiles, 1 + len(methods))


def load_models(checkpoint_dir: Path | None = None) -> dict[str, object]:
    from models.audio.localize import load_localizer
    from models.captioning.checkpoint import load_captioner
    from models.embedding.checkpoint import load_embedder
    from models.judge import load_judge

    return {"judge": load_judge(directory=checkpoint_dir).net,
            "captioning": load_captioner(directory=checkpoint_dir).model,
            "embedding": load_embedder(directory=checkpoint_dir).model,
            "localization": load_localizer(checkpoint_dir=checkpoint_dir).model}


CASES = {"judge": judge_cases, "captioning": caption_cases, "embedding": match_cases, "localization": sound_cases}


def cases_for(name: str, model, count: int, first_seed: int = FIRST_SEED) -> list[Case]:
    return list(CASES[name](model, count, first_seed))


COLUMNS = ("pointing", "deletion ↓", "insertion ↑", "sanity mean rho", "sanity all-random rho", "s / map")


def markdown_table(name: str, results: dict[str, dict[str, float]]) -> str:
    """The docs' table for one model: one row per method, then the baselines."""
    lines = [f"| {name} method | " + " | ".join(COLUMNS) + " |", "| --- " * (len(COLUMNS) + 1) + "|"]
    for method, row in results.items():
        label = f"{method} (baseline)" if method in BASELINES else method
        sanity = [f"{row[k]:.2f}" if k in row else "—" for k in ("sanity_mean_rho", "sanity_final_rho")]
        seconds = "—" if method in BASELINES else f"{row['seconds_per_map']:.2f}"
        lines.append(f"| {label} | {row['pointing']:.2f} | {row['deletion']:.3f} | {row['insertion']:.3f} | "
                     f"{' | '.join(sanity)} | {seconds} |")
    return "\n".join(lines)


def write_docs(path: Path, tables: dict[str, str]) -> None:
    """Replace each `<!-- measured:NAME -->` ... `<!-- /measured:NAME -->` block of `path` with its table."""
    text = path.read_text(encoding="utf-8")
    for name, table in tables.items():
        begin, end = f"<!-- measured:{name} -->", f"<!-- /measured:{name} -->"
        if begin not in text or end not in text:
            raise SystemExit(f"{path} has no {begin} ... {end} block for the {name} table")
        head, rest = text.split(begin, 1)
        text = head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1]
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--sanity-scenes", type=int, default=20)
    parser.add_argument("--models", default="judge,captioning")
    parser.add_argument("--methods", default="", help="comma-separated subset of the methods (default: all)")
    parser.add_argument("--pictures", type=Path, default=None, help="folder for the docs' PNGs")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--docs", type=Path, default=None,
                        help="rewrite the <!-- measured:MODEL --> tables of this page (docs/explanations.md)")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="write --docs from a previous --json file instead of measuring")
    args = parser.parse_args(argv)
    if args.from_json:
        everything = json.loads(args.from_json.read_text())
        if args.docs:
            write_docs(args.docs, {name: markdown_table(name, rows) for name, rows in everything.items()})
        return
    torch.manual_seed(0)
    models = load_models()
    options = Options()
    everything = {}
    for name in args.models.split(","):
        cases = cases_for(name, models[name], args.scenes)
        started = time.perf_counter()
        methods = tuple(m for m in METHODS_BY_MODEL[name] if not args.methods or m in args.methods.split(","))
        everything[name] = measure(name, models[name], cases, methods, args.sanity_scenes, options)
        print(f"== {name}: {len(cases)} scenes, {time.perf_counter() - started:.0f} s")
        for method, row in everything[name].items():
            print(f"{method:18s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
        if args.pictures:
            args.pictures.mkdir(parents=True, exist_ok=True)
            picture = pictures(cases[:4], methods, options)
            (args.pictures / f"{name}.png").write_bytes(render.png_bytes(picture))
    if args.json:
        args.json.write_text(json.dumps(everything, indent=2) + "\n")
    if args.docs:
        write_docs(args.docs, {name: markdown_table(name, rows) for name, rows in everything.items()})


if __name__ == "__main__":
    main()
