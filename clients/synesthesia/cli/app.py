"""`syn`: call a Synesthesia stack from the shell.

Every command talks to the gateway at --target (SYN_TARGET, default
127.0.0.1:50050), which forwards search, index and features to the embedding
and audio services; --embedding / --audio on those commands dial a service
directly instead.
Pictures land in --out (default ./out); --json prints machine-readable results.
"""

from __future__ import annotations

import contextlib
import functools
import io
from pathlib import Path

import grpc
import numpy as np
import typer
import yaml
from PIL import Image
from rich.live import Live
from rich.progress import Progress
from rich.table import Table

from synesthesia.cli.output import console, emit_json, errors, fail_rpc
from synesthesia.client import DEFAULT_TARGETS, FEATURE_KINDS, Client, default_target
from synesthesia.pictures import attention_overlay, contact_sheet, heatmap_overlay, png_bytes
from synesthesia.tensors import from_tensor
from synesthesia.v1 import common_pb2, embedding_pb2, gateway_pb2

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class State:
    target: str = DEFAULT_TARGETS["gateway"]
    timeout_s: float = 120.0
    out: Path = Path("out")
    as_json: bool = False
    token: str | None = None

    def client(self, **direct: str | None) -> Client:
        """A client for the gateway; `embedding=` / `audio=` send those calls to a service directly."""
        return Client(self.target, timeout_s=self.timeout_s, token=self.token, **direct)


state = State()


@app.callback()
def options(
    target: str = typer.Option(None, help="gateway address (env SYN_TARGET)"),
    timeout: float = typer.Option(120.0, help="deadline per call, seconds"),
    out: Path = typer.Option(Path("out"), help="folder for pictures"),
    json_output: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
    token: str = typer.Option(None, envvar="SYN_TOKEN", help="bearer token, if the stack requires one"),
) -> None:
    state.target = target or default_target("gateway")
    state.timeout_s, state.out, state.as_json, state.token = timeout, out, json_output, token


def rpc(command):
    """Turn gRPC failures into a red message and the status's exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except grpc.RpcError as err:
            fail_rpc(err)

    return wrapper


def _read_image(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _save(name: str, pixels: np.ndarray) -> Path:
    state.out.mkdir(parents=True, exist_ok=True)
    path = state.out / name
    path.write_bytes(png_bytes(pixels))
    return path


@app.command()
@rpc
def caption(image: Path = typer.Argument(..., exists=True, dir_okay=False),
            beam: int = typer.Option(0, help="beam size 1-10 (0: server default)"),
            collection: str = typer.Option("", help="also list the nearest items of this collection"),
            top_k: int = typer.Option(5, help="neighbours to list")) -> None:
    """Caption an image; writes a contact sheet of per-word attention."""
    with state.client() as client:
        reply = client.describe(image, collection=collection, top_k=top_k if collection else 0, beam_size=beam)
    pixels = _read_image(image)
    words = list(reply.caption.words)
    overlays = [attention_overlay(pixels, from_tensor(w.attention.values)) for w in words if w.attention.values.shape]
    sheet = _save(f"{image.stem}_attention.png", contact_sheet([pixels] + overlays, ["input"] + [
        w.text for w in words][:len(overlays)], columns=6, scale=max(1, 192 // max(pixels.shape[:2])))) \
        if overlays else None
    if state.as_json:
        return emit_json({"caption": reply.caption.caption, "log_probability": reply.caption.log_probability,
                          "words": [w.text for w in words], "attention_sheet": str(sheet) if sheet else None,
                          "neighbours": [{"id": h.id, "score": h.score, "metadata": dict(h.metadata)}
                                         for h in reply.neighbours]})
    console.print(f"[bold]{reply.caption.caption}[/bold]  (log p = {reply.caption.log_probability:.2f})")
    table = Table("word", "log p")
    for w in words:
        table.add_row(w.text, f"{w.log_probability:.3f}")
    console.print(table)
    if reply.neighbours:
        hits = Table("id", "score", "metadata", title=f"nearest in {collection}")
        for h in reply.neighbours:
            hits.add_row(h.id, f"{h.score:.3f}", ", ".join(f"{k}={v}" for k, v in h.metadata.items()))
        console.print(hits)
    if sheet:
        console.print(f"attention: {sheet}")


@app.command()
@rpc
def imagine(prompt: str, n: int = typer.Option(1, "-n", help="images, 1-16"),
            seed: int = typer.Option(0, help="0 picks a random seed")) -> None:
    """Generate images from a prompt, caption them, and score prompt agreement."""
    with state.client() as client:
        reply = client.imagine(prompt, n=n, seed=seed)
    paths = [_save(f"imagine_{reply.seed}_{i}.png", np.asarray(Image.open(io.BytesIO(img.image.data)).convert(
        "RGB"))) for i, img in enumerate(reply.images)]
    if state.as_json:
        return emit_json({"seed": reply.seed, "unknown_words": list(reply.unknown_words), "images": [
            {"path": str(p), "caption": i.caption, "prompt_agreement": i.prompt_agreement}
            for p, i in zip(paths, reply.images)]})
    table = Table("file", "caption", "agreement", title=f"'{prompt}' (seed {reply.seed})")
    for path, img in zip(paths, reply.images):
        table.add_row(str(path), img.caption, f"{img.prompt_agreement:.3f}")
    console.print(table)
    if reply.unknown_words:
        errors.print(f"[yellow]unknown words ignored:[/yellow] {', '.join(reply.unknown_words)}")


@app.command()
@rpc
def translate(image: Path = typer.Argument(..., exists=True, dir_okay=False),
              model: str = typer.Option(..., help="sketch2photo, day2night or night2day")) -> None:
    """Translate an image with an image-to-image model and caption the result."""
    with state.client() as client:
        reply = client.translate(image, model)
    path = _save(f"{image.stem}_{model}.png", np.asarray(Image.open(io.BytesIO(reply.image.data)).convert("RGB")))
    if state.as_json:
        return emit_json({"path": str(path), "caption": reply.caption})
    console.print(f"{path}: [bold]{reply.caption}[/bold]")


@app.command()
@rpc
def listen(image: Path = typer.Argument(..., exists=True, dir_okay=False),
           audio: Path = typer.Argument(..., exists=True, dir_okay=False)) -> None:
    """Find where in the image the sound comes from; writes a heatmap overlay."""
    with state.client() as client:
        reply = client.listen(image, audio)
    pixels = _read_image(image)
    path = _save(f"{image.stem}_listen.png", heatmap_overlay(pixels, from_tensor(reply.heatmap.values)))
    box = reply.box
    if state.as_json:
        return emit_json({"summary": reply.summary, "caption": reply.caption, "peak_score": reply.peak_score,
                          "box": [box.x_min_px, box.y_min_px, box.x_max_px, box.y_max_px], "overlay": str(path)})
    console.print(f"[bold]{reply.summary}[/bold]  (peak {reply.peak_score:.2f}, box "
                  f"{box.x_min_px:.0f},{box.y_min_px:.0f}-{box.x_max_px:.0f},{box.y_max_px:.0f}); overlay: {path}")


@app.command()
@rpc
def search(query: str = typer.Argument(None, help="text query"),
           image: Path = typer.Option(None, exists=True, dir_okay=False, help="image query instead of text"),
           collection: str = typer.Option("default"), top_k: int = typer.Option(5, "--top-k", "-k"),
           embedding: str = typer.Option(None, help="dial the embedding service here instead of the gateway")) -> None:
    """Search a collection by text or image."""
    if (query is None) == (image is None):
        errors.print("give a text query or --image, not both")
        raise typer.Exit(2)
    with state.client(embedding=embedding) as client:
        reply = client.search(query, image=image, collection=collection, top_k=top_k)
    if state.as_json:
        return emit_json(reply)
    table = Table("rank", "id", "score", "metadata", title=f"{collection}: {query or image}")
    for rank, hit in enumerate(reply.hits, 1):
        table.add_row(str(rank), hit.id, f"{hit.score:.3f}", ", ".join(f"{k}={v}" for k, v in hit.metadata.items()))
    console.print(table)


@app.command()
@rpc
def index(folder: Path = typer.Argument(..., exists=True, file_okay=False),
          collection: str = typer.Option("default"), batch: int = typer.Option(32, help="images per Upsert"),
          embedding: str = typer.Option(None, help="dial the embedding service here instead of the gateway")) -> None:
    """Add every image under a folder to a collection (id = relative path)."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        errors.print(f"no images under {folder}")
        raise typer.Exit(2)
    size = 0
    with state.client(embedding=embedding) as client, \
            Progress(console=errors, disable=state.as_json) as progress:
        task = progress.add_task(f"indexing into {collection}", total=len(files))
        for start in range(0, len(files), batch):
            chunk = files[start:start + batch]
            items = [embedding_pb2.Item(id=str(p.relative_to(folder)), image=common_pb2.Image(data=p.read_bytes()),
                                        metadata={"path": str(p)}) for p in chunk]
            size = client.upsert(items, collection=collection).collection_size
            progress.advance(task, len(chunk))
    if state.as_json:
        return emit_json({"collection": collection, "indexed": len(files), "collection_size": size})
    console.print(f"indexed {len(files)} images into {collection} ({size} items)")


@app.command()
@rpc
def features(audio_file: Path = typer.Argument(..., exists=True, dir_okay=False),
             kind: str = typer.Option("log-mel", help="magnitude, power or log-mel"),
             n_fft: int = typer.Option(0), hop: int = typer.Option(0), n_mels: int = typer.Option(0),
             save: Path = typer.Option(None, help="write the features as .npy"),
             audio: str = typer.Option(None, help="dial the audio service here instead of the gateway")) -> None:
    """STFT features of an audio file (Hamming window by default)."""
    if kind not in FEATURE_KINDS:
        errors.print(f"--kind must be one of {', '.join(FEATURE_KINDS)}")
        raise typer.Exit(2)
    with state.client(audio=audio) as client:
        reply = client.features(audio_file, kind=kind, n_fft=n_fft, hop=hop, n_mels=n_mels)
    values = from_tensor(reply.features)
    if save:
        np.save(save, values)
    summary = {"shape": list(values.shape), "frame_rate_hz": reply.frame_rate_hz,
               "sample_rate_hz": reply.sample_rate_hz, "samples": reply.sample_count,
               "min": float(values.min()), "max": float(values.max()), "saved": str(save) if save else None}
    if state.as_json:
        return emit_json(summary)
    table = Table("field", "value", title=f"{kind} features of {audio_file.name}")
    for key, value in summary.items():
        table.add_row(key, str(value))
    console.print(table)


@app.command()
@rpc
def run(spec: Path = typer.Argument(..., exists=True, dir_okay=False),
        input_: list[str] = typer.Option([], "--input", "-i", help="NAME=FILE, referenced as ${inputs.NAME}")) -> None:
    """Run a pipeline spec (YAML/JSON) through the gateway, showing each step live."""
    inputs = {}
    for item in input_:
        name, _, path = item.partition("=")
        if not path:
            errors.print(f"--input needs NAME=FILE, got {item!r}")
            raise typer.Exit(2)
        inputs[name] = Path(path).read_bytes()
    yaml.safe_load(spec.read_text())  # a local syntax error is reported before any call
    events = []
    table = Table("step", "state", "ms", "detail", title=str(spec))
    live = contextlib.nullcontext() if state.as_json else Live(table, console=errors)
    with state.client() as client, live:
        try:
            for event in client.run(spec.read_text(), inputs):
                events.append(event)
                name = gateway_pb2.StepState.Name(event.state).removeprefix("STEP_STATE_").lower()
                detail = f"{event.error_code}: {event.error_message}" if event.error_code else event.output_json[:80]
                table.add_row(event.step, name, f"{event.elapsed_ms:.0f}" if event.elapsed_ms else "", detail)
        finally:
            if state.as_json:
                emit_json([{"step": e.step, "state": gateway_pb2.StepState.Name(e.state), "elapsed_ms": e.elapsed_ms,
                            "output_json": e.output_json, "error_code": e.error_code,
                            "error_message": e.error_message} for e in events])


@app.command()
def health() -> None:
    """Health of the gateway and, as it sees them, every service (exit 5 if any is not SERVING)."""
    with state.client() as client:
        status = client.health(timeout_s=min(state.timeout_s, 5.0))
    if state.as_json:
        emit_json(status)
    else:
        table = Table("service", "target", "status")
        for name, entry in status.items():
            colour = "green" if entry["status"] == "SERVING" else "red"
            table.add_row(name, entry["target"], f"[{colour}]{entry['status']}[/{colour}]")
        console.print(table)
    if any(entry["status"] != "SERVING" for entry in status.values()):
        raise typer.Exit(5)


def main() -> None:
    app()
