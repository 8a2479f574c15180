"""`syn explain ...`: why a model answered, as pictures in --out (through the gateway's Explain RPC).

    syn explain caption scene.png --word 3            # Grad-CAM, occlusion, ... of the 4th word, beside attention
    syn explain judge scene.png --head colour         # CAM / Grad-CAM of the judge's prediction
    syn explain judge-class colour blue               # class visualisation by gradient ascent
    syn explain judge-filters                         # the judge's first-layer filters
    syn explain judge-patches --layer trunk.3 --channel 5
    syn explain match scene.png "a small red circle"  # why the image matches the text
    syn explain sound scene.png sound.wav             # which pixels sound like the clip
    syn explain neighbors my-collection item-7
    syn explain map my-collection --label-key shape   # t-SNE (or --method umap) map of a collection
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import typer
from PIL import Image
from rich.table import Table

from synesthesia.cli.app import _read_image, _save, console, emit_json, rpc, state
from synesthesia.client import audio_message, image_message
from synesthesia.pictures import contact_sheet
from synesthesia.tensors import from_tensor
from synesthesia.v1 import explain_pb2

explain_app = typer.Typer(help=__doc__, no_args_is_help=True)
E = explain_pb2
IMAGE = typer.Argument(..., exists=True, dir_okay=False)


def _methods(names: list[str] | None, default: list[str]) -> list[int]:
    chosen = names or default
    values = []
    for name in chosen:
        key = f"EXPLAIN_METHOD_{name.upper().replace('-', '_')}"
        if key not in E.ExplainMethod.keys():
            known = ", ".join(k.removeprefix("EXPLAIN_METHOD_").lower() for k in E.ExplainMethod.keys()[1:])
            raise typer.BadParameter(f"unknown method {name!r}; known: {known}", param_hint="--method")
        values.append(E.ExplainMethod.Value(key))
    return values


def _options(window: int, stride: int) -> explain_pb2.ExplainOptions:
    return E.ExplainOptions(occlusion_window_px=window, occlusion_stride_px=stride)


def _call(**target) -> explain_pb2.ExplainResponse:
    with state.client() as client:
        return client.explain(E.ExplainRequest(**target))


def _write_explanations(stem: str, image: Path, explanations, title: str) -> list[Path]:
    """One overlay PNG per method plus a sheet of all of them; prints or returns their paths."""
    paths, overlays, labels = [], [], []
    for e in explanations:
        name = E.ExplainMethod.Name(e.method).removeprefix("EXPLAIN_METHOD_").lower()
        overlay = np.asarray(Image.open(io.BytesIO(e.overlay_png)).convert("RGB"))
        paths.append(_save(f"{stem}_{name}.png", overlay))
        overlays.append(overlay)
        labels.append(name)
    pixels = _read_image(image)
    scale = max(1, 192 // max(pixels.shape[:2]))
    sheet = _save(f"{stem}_explanations.png", contact_sheet([pixels] + overlays, ["input"] + labels,
                                                            columns=4, scale=scale))
    if state.as_json:
        emit_json({"title": title, "pictures": [str(p) for p in paths], "sheet": str(sheet),
                   "seconds": [e.compute_seconds for e in explanations]})
    else:
        console.print(title)
        table = Table("method", "picture", "seconds")
        for label, path, e in zip(labels, paths, explanations):
            table.add_row(label, str(path), f"{e.compute_seconds:.2f}")
        console.print(table)
        console.print(f"sheet: {sheet}")
    return paths


METHOD_HELP = "method (repeat): grad_cam, guided_grad_cam, guided_backprop, gradient, gradient_squared, occlusion, " \
              "cam, attention"


@explain_app.command()
@rpc
def caption(image: Path = IMAGE, word: int = typer.Option(0, help="index of the word to explain"),
            text: str = typer.Option("", "--caption", help="caption to explain (default: the model's own)"),
            method: list[str] = typer.Option(None, help=METHOD_HELP),
            window: int = typer.Option(0, help="occlusion window, px"), stride: int = typer.Option(0, help="occlusion stride, px"),
            model: str = typer.Option("", help="captioning model")) -> None:
    """Why the captioner said one word: saliency maps beside its attention."""
    reply = _call(caption=E.ExplainCaptionRequest(
        image=image_message(image), caption=text, word_index=word, model=model, options=_options(window, stride),
        methods=_methods(method, ["attention", "grad_cam", "guided_grad_cam", "occlusion"]))).caption
    _write_explanations(f"{image.stem}_word{word}", image, reply.explanations,
                        f"[bold]{reply.caption}[/bold]: '{reply.word}' (log p = {reply.log_probability:.3f})")


@explain_app.command()
@rpc
def judge(image: Path = IMAGE, head: str = typer.Option("shape", help="shape, colour, size or domain"),
          class_name: str = typer.Option("", "--class", help="class to explain (default: the prediction)"),
          method: list[str] = typer.Option(None, help=METHOD_HELP),
          window: int = typer.Option(0, help="occlusion window, px"), stride: int = typer.Option(0, help="occlusion stride, px")) -> None:
    """Why the ShapesWorld judge chose a class."""
    reply = _call(judge=E.ExplainJudgeRequest(image=image_message(image), head=head, class_name=class_name,
                                              options=_options(window, stride),
                                              methods=_methods(method, ["cam", "grad_cam", "occlusion"]))).judge
    predicted = ", ".join(f"{p.head}={p.class_name} ({p.probability:.2f})" for p in reply.predictions)
    _write_explanations(f"{image.stem}_judge_{reply.head}_{reply.class_name}", image, reply.explanations,
                        f"judge: {predicted}; explaining {reply.head}={reply.class_name}")


def _picture(name: str, data: bytes, summary: dict) -> None:
    path = _save(name, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    if state.as_json:
        emit_json(summary | {"picture": str(path)})
    else:
        console.print(", ".join(f"{k}: {v}" for k, v in summary.items()) + f"\npicture: {path}")


@explain_app.command("judge-class")
@rpc
def judge_class(head: str, class_name: str, steps: int = typer.Option(200, help="gradient-ascent steps"),
                seed: int = typer.Option(0, help="seed of the starting noise")) -> None:
    """An input the judge finds most like a class (gradient ascent with a regulariser)."""
    reply = _call(visualize_judge=E.VisualizeJudgeRequest(kind=E.JUDGE_VISUALIZATION_CLASS, head=head,
                                                          class_name=class_name, steps=steps, seed=seed)).visualize_judge
    scores = from_tensor(reply.scores)
    _picture(f"judge_class_{head}_{class_name}.png", reply.picture_png,
             {"class": f"{head}={class_name}", "logit_first": round(float(scores[0]), 3),
              "logit_last": round(float(scores[-1]), 3)})


@explain_app.command("judge-filters")
@rpc
def judge_filters() -> None:
    """The judge's first-layer filters."""
    reply = _call(visualize_judge=E.VisualizeJudgeRequest(kind=E.JUDGE_VISUALIZATION_FIRST_LAYER_FILTERS)).visualize_judge
    _picture("judge_filters.png", reply.picture_png, {"filters": reply.values.shape[0] if reply.values.shape else 0,
                                                      "layers": " ".join(reply.layers)})


@explain_app.command("judge-patches")
@rpc
def judge_patches(layer: str = typer.Option("", help="layer (trunk.0 .. trunk.5; default the last)"),
                  channel: int = typer.Option(0, help="channel of that layer"),
                  scenes: int = typer.Option(256, help="held-out scenes to search"),
                  top_k: int = typer.Option(16, help="patches")) -> None:
    """The patches of held-out scenes that activate one channel most."""
    reply = _call(visualize_judge=E.VisualizeJudgeRequest(kind=E.JUDGE_VISUALIZATION_TOP_PATCHES, layer=layer,
                                                          channel=channel, scene_count=scenes,
                                                          top_k=top_k)).visualize_judge
    _picture(f"judge_patches_{layer or 'last'}_{channel}.png", reply.picture_png,
             {"patches": len(reply.patches), "strongest": round(reply.patches[0].activation, 3) if reply.patches else None})


@explain_app.command()
@rpc
def match(image: Path = IMAGE, text: str = typer.Argument(...), method: list[str] = typer.Option(None, help=METHOD_HELP),
          window: int = typer.Option(0, help="occlusion window, px"), stride: int = typer.Option(0, help="occlusion stride, px"),
          model: str = typer.Option("", help="embedding model")) -> None:
    """Why an image matches a text (maps of their cosine similarity)."""
    reply = _call(match=E.ExplainMatchRequest(image=image_message(image), text=text, model=model,
                                              options=_options(window, stride),
                                              methods=_methods(method, ["grad_cam", "occlusion"]))).match
    _write_explanations(f"{image.stem}_match", image, reply.explanations,
                        f"'{text}': similarity {reply.similarity:.3f}")


@explain_app.command()
@rpc
def sound(image: Path = IMAGE, audio: Path = typer.Argument(..., exists=True, dir_okay=False),
          method: list[str] = typer.Option(None, help=METHOD_HELP),
          window: int = typer.Option(0, help="occlusion window, px"), stride: int = typer.Option(0, help="occlusion stride, px"),
          model: str = typer.Option("", help="sound localisation model")) -> None:
    """Which pixels make the image sound like the clip."""
    reply = _call(localization=E.ExplainLocalizationRequest(
        image=image_message(image), audio=audio_message(audio), options=_options(window, stride), model=model,
        methods=_methods(method, ["grad_cam", "occlusion"]))).localization
    _write_explanations(f"{image.stem}_sound", image, reply.explanations,
                        f"audio-visual score {reply.score:.3f} ({reply.model})")


@explain_app.command()
@rpc
def neighbors(collection: str, item: str, top_k: int = typer.Option(10, help="neighbours")) -> None:
    """The items of a collection closest to one of its items."""
    reply = _call(neighbors=E.ItemNeighborsRequest(collection=collection, id=item, top_k=top_k)).neighbors
    rows = [{"id": n.id, "score": n.score, "metadata": dict(n.metadata)} for n in reply.neighbors]
    if state.as_json:
        return emit_json(rows)
    table = Table("id", "score", "metadata", title=f"nearest to {item} in {collection}")
    for n in reply.neighbors:
        table.add_row(n.id, f"{n.score:.3f}", ", ".join(f"{k}={v}" for k, v in n.metadata.items()))
    console.print(table)


@explain_app.command("map")
@rpc
def map_collection(collection: str, label_key: str = typer.Option("", help="metadata key that colours the points"),
                   max_items: int = typer.Option(0, help="items to map (0: all, up to the server's limit)"),
                   method: str = typer.Option("tsne", help="tsne or umap (umap where the server has umap-learn)"),
                   perplexity: float = typer.Option(0.0, help="t-SNE perplexity (0: automatic)"),
                   neighbors: int = typer.Option(0, help="UMAP n_neighbors (0: automatic)"),
                   seed: int = typer.Option(0, help="seed")) -> None:
    """A 2-D t-SNE or UMAP map of a collection: a picture plus a JSON file of coordinates."""
    key = f"MAP_METHOD_{method.upper()}"
    if method.lower() != method or key not in E.MapMethod.keys() or key == "MAP_METHOD_UNSPECIFIED":
        raise typer.BadParameter(f"unknown map method {method!r}; known: tsne, umap", param_hint="--method")
    reply = _call(map_collection=E.MapCollectionRequest(collection=collection, label_key=label_key,
                                                        max_items=max_items, perplexity=perplexity,
                                                        method=E.MapMethod.Value(key), umap_neighbors=neighbors,
                                                        seed=seed)).map_collection
    state.out.mkdir(parents=True, exist_ok=True)
    points = state.out / f"{collection}_{reply.method}.json"
    points.write_text(json.dumps([{"id": p.id, "x": p.x, "y": p.y, "label": p.label} for p in reply.points]))
    _picture(f"{collection}_{reply.method}.png", reply.picture_png,
             {"points": len(reply.points), "coordinates": str(points)})
