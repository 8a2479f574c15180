"""`syn`: call a Synesthesia stack from the shell.

Every command talks to the gateway at --target (SYN_TARGET, default
127.0.0.1:50050), which forwards search, index and features to the embedding
and audio services; --embedding / --audio on those commands dial a service
directly instead.
Pictures land in --out (default ./out); --json (before or after the command)
prints machine-readable results, errors included.
Secured stacks: --token (SYN_TOKEN), --ca (TLS), --cert and --key (mutual TLS).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import re
import sys
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path

import grpc
import numpy as np
import typer
import yaml
from PIL import Image, ImageDraw
from rich.live import Live
from rich.markup import escape
from rich.progress import Progress
from rich.table import Column, Table

from synesthesia.channels import ChannelSecurity
from synesthesia.cli.output import (
    Output,
    console,
    emit_json,
    errors,
    fail,
    fail_rpc,
    fail_usage,
    field_violations,
)
from synesthesia.client import DEFAULT_TARGETS, FEATURE_KINDS, Client, default_target
from synesthesia.pictures import attention_overlay, contact_sheet, heatmap_overlay, png_bytes
from synesthesia.tensors import from_tensor
from synesthesia.v1 import common_pb2, embedding_pb2, gateway_pb2

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
# Overlays are written at least this large: a 64 px scene is unreadable as it is.
OVERLAY_PX = 512
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class State:
    target: str = DEFAULT_TARGETS["gateway"]
    timeout_s: float = 120.0
    out: Path = Path("out")
    as_json: bool = False
    token: str | None = None
    security: ChannelSecurity = ChannelSecurity()

    def client(self, **direct: str | None) -> Client:
        """A client for the gateway; `embedding=` / `audio=` send those calls to a service directly."""
        return Client(self.target, timeout_s=self.timeout_s, security=self.security, **direct)


state = State()


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("synesthesia-client")
        except metadata.PackageNotFoundError:
            version = "unknown"
        typer.echo(f"syn (synesthesia-client) {version}")
        raise typer.Exit()


@app.callback()
def options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the client's version and exit"),
    target: str = typer.Option(None, help="gateway address (env SYN_TARGET)"),
    timeout: float = typer.Option(120.0, help="deadline per call, seconds"),
    out: Path = typer.Option(Path("out"), help="folder for pictures"),
    json_output: bool = typer.Option(False, "--json", help="print JSON instead of tables (also after the command)"),
    token: str = typer.Option(None, envvar="SYN_TOKEN", help="bearer token, if the stack requires one"),
    ca: Path = typer.Option(None, envvar="SYN_CLIENT_CA_FILE", dir_okay=False,
                            help="PEM roots that verify the server's certificate (turns TLS on)"),
    cert: Path = typer.Option(None, envvar="SYN_CLIENT_CERT_FILE", dir_okay=False,
                              help="client certificate for mutual TLS (with --key)"),
    key: Path = typer.Option(None, envvar="SYN_CLIENT_KEY_FILE", dir_okay=False,
                             help="client private key for mutual TLS (with --cert)"),
    server_name: str = typer.Option(None, envvar="SYN_CLIENT_SERVER_NAME",
                                    help="name to verify in the server certificate instead of the target host"),
    tls: bool = typer.Option(False, "--tls", envvar="SYN_CLIENT_TLS", help="TLS with the system's roots"),
) -> None:
    state.target = target or default_target("gateway")
    state.timeout_s, state.out, state.as_json, state.token = timeout, out, json_output, token
    Output.as_json = json_output
    try:
        state.security = ChannelSecurity(
            ca_file=str(ca or ""), cert_file=str(cert or ""), key_file=str(key or ""), server_name=server_name or "",
            tls=tls, token=token or "",
            names={"ca_file": "--ca", "cert_file": "--cert", "key_file": "--key", "server_name": "--server-name",
                   "tls": "--tls", "token": "--token"})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


Flags = Mapping[str, str] | Callable[[dict], Mapping[str, str]]


def rpc(command=None, *, flags: Flags | None = None):
    """Turn gRPC failures into a message naming the command's flags, and the status's exit code.

    `flags` maps request fields to what the user typed: {"image_count": "-n"}, or is a
    function of the command's arguments (to name the file a bad image came from).
    """

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except grpc.RpcError as err:
                names = flags(kwargs) if callable(flags) else flags
                fail_rpc(err, flags=names or {}, target=state.target)

        return wrapper

    return decorate(command) if command is not None else decorate


def uncut_column(header: str, values) -> Column:
    """A table column that never shortens or wraps what it holds (file paths, ids)."""
    width = max([len(str(v)) for v in values] + [len(header)])
    return Column(header, no_wrap=True, min_width=width, overflow="ignore")


def print_uncut(table: Table) -> None:
    """Print a table at least as wide as its path columns: a narrow terminal wraps the line, no path is cut."""
    needed = sum((column.min_width or 1) + 3 for column in table.columns) + 1  # cells plus borders and padding
    width = console.width
    console.width = max(width, needed)
    try:
        console.print(table, crop=False)
    finally:
        console.width = width


def _read_image(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def readable_scale(pixels: np.ndarray, at_least_px: int = OVERLAY_PX) -> int:
    """The whole-number zoom that makes a small picture at least `at_least_px` on its longer side."""
    return max(1, -(-at_least_px // max(pixels.shape[:2])))


def listen_overlay(pixels: np.ndarray, heatmap: np.ndarray, box) -> np.ndarray:
    """The picture zoomed to a readable size, the heatmap blended over it and the box drawn on it."""
    scale = readable_scale(pixels)
    zoomed = np.asarray(Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale),
                                                       Image.NEAREST))
    overlay = Image.fromarray(heatmap_overlay(zoomed, heatmap))
    ImageDraw.Draw(overlay).rectangle(
        [box.x_min_px * scale, box.y_min_px * scale, box.x_max_px * scale - 1, box.y_max_px * scale - 1],
        outline=(0, 229, 255), width=max(2, scale // 2))
    return np.asarray(overlay)


def _save(name: str, pixels: np.ndarray) -> Path:
    state.out.mkdir(parents=True, exist_ok=True)
    path = state.out / name
    path.write_bytes(png_bytes(pixels))
    return path


@app.command()
@rpc(flags=lambda a: {"image": f"IMAGE {a['image']}", "beam_size": "--beam", "options.beam_size": "--beam",
                      "top_k": "--top-k", "collection": "--collection", "model": "--model",
                      "options.model": "--model"})
def caption(image: Path = typer.Argument(..., exists=True, dir_okay=False),
            beam: int = typer.Option(0, help="beam size 1-10 (0: server default)"),
            collection: str = typer.Option("", help="also list the nearest items of this collection"),
            top_k: int = typer.Option(5, help="neighbours to list"),
            model: str = typer.Option("", "--model", help="model from `syn models` (empty: the service's default)")) -> None:
    """Caption an image; writes a contact sheet of per-word attention."""
    with state.client() as client:
        reply = client.describe(image, collection=collection, top_k=top_k if collection else 0, beam_size=beam,
                                model=model)
    pixels = _read_image(image)
    words = list(reply.caption.words)
    overlays = [attention_overlay(pixels, from_tensor(w.attention.values)) for w in words if w.attention.values.shape]
    sheet = _save(f"{image.stem}_attention.png", contact_sheet([pixels] + overlays, ["input"] + [
        w.text for w in words][:len(overlays)], columns=6, scale=max(1, 192 // max(pixels.shape[:2])))) \
        if overlays else None
    if state.as_json:
        return emit_json({"caption": reply.caption.caption, "log_probability": reply.caption.log_probability,
                          "model": reply.caption.model, "warnings": list(reply.caption.warnings),
                          "words": [w.text for w in words], "attention_sheet": str(sheet) if sheet else None,
                          "neighbours": [{"id": h.id, "score": h.score, "metadata": dict(h.metadata)}
                                         for h in reply.neighbours]})
    console.print(f"[bold]{reply.caption.caption}[/bold]  (log p = {reply.caption.log_probability:.2f}, "
                  f"{reply.caption.model})")
    _print_warnings(reply.caption.warnings)
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
@rpc(flags={"prompt": "PROMPT", "image_count": "-n", "seed": "--seed", "model": "--model",
            "captioning_model": "--captioning-model"})
def imagine(prompt: str, n: int = typer.Option(1, "-n", help="images, 1-16"),
            seed: int = typer.Option(0, help="0 picks a random seed"),
            model: str = typer.Option("", "--model", help="model from `syn models` (empty: the service's default)"),
            captioning_model: str = typer.Option("", "--captioning-model", help="captioner of the result (empty: default)")) -> None:
    """Generate images from a prompt, caption them, and score prompt agreement."""
    with state.client() as client:
        reply = client.imagine(prompt, n=n, seed=seed, model=model, captioning_model=captioning_model)
    paths = [_save(f"imagine_{reply.seed}_{i}.png", np.asarray(Image.open(io.BytesIO(img.image.data)).convert(
        "RGB"))) for i, img in enumerate(reply.images)]
    if state.as_json:
        return emit_json({"seed": reply.seed, "model": reply.model, "unknown_words": list(reply.unknown_words),
                          "warnings": list(reply.warnings), "images": [
            {"path": str(p), "caption": i.caption, "prompt_agreement": i.prompt_agreement}
            for p, i in zip(paths, reply.images)]})
    table = Table(uncut_column("file", paths), Column("caption", min_width=20), Column("agreement", min_width=9),
                  title=f"'{prompt}' (seed {reply.seed})")
    for path, img in zip(paths, reply.images):
        table.add_row(str(path), img.caption, f"{img.prompt_agreement:.3f}")
    print_uncut(table)
    if reply.unknown_words:
        errors.print(f"[yellow]unknown words ignored:[/yellow] {', '.join(reply.unknown_words)}")
    _print_warnings(reply.warnings)


def _print_warnings(warnings) -> None:
    """The services' notes (inputs outside a built-in's world, failed later steps), on stderr."""
    for warning in warnings:
        errors.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)


@app.command()
@rpc(flags=lambda a: {"image": f"IMAGE {a['image']}", "model": "--model", "captioning_model": "--captioning-model"})
def translate(image: Path = typer.Argument(..., exists=True, dir_okay=False),
              model: str = typer.Option(..., "--model", help="image-to-image model from `syn models`, e.g. "
                                                             "sketch2photo, day2night or night2day"),
              captioning_model: str = typer.Option("", "--captioning-model", help="captioner of the result (empty: default)")) -> None:
    """Translate an image with an image-to-image model and caption the result."""
    with state.client() as client:
        reply = client.translate(image, model, captioning_model=captioning_model)
    path = _save(f"{image.stem}_{model}.png", np.asarray(Image.open(io.BytesIO(reply.image.data)).convert("RGB")))
    if state.as_json:
        return emit_json({"path": str(path), "caption": reply.caption, "model": reply.model,
                          "warnings": list(reply.warnings)})
    console.print(f"{path}: [bold]{reply.caption}[/bold]")
    _print_warnings(reply.warnings)


@app.command()
@rpc(flags=lambda a: {"image": f"IMAGE {a['image']}", "audio": f"AUDIO {a['audio']}", "model": "--model",
                      "captioning_model": "--captioning-model"})
def listen(image: Path = typer.Argument(..., exists=True, dir_okay=False),
           audio: Path = typer.Argument(..., exists=True, dir_okay=False),
           model: str = typer.Option("", "--model", help="sound localiser from `syn models` (empty: default)"),
           captioning_model: str = typer.Option("", "--captioning-model", help="captioner of the result (empty: default)")) -> None:
    """Find where in the image the sound comes from; writes a heatmap overlay."""
    with state.client() as client:
        reply = client.listen(image, audio, model=model, captioning_model=captioning_model)
    box = reply.box
    path = _save(f"{image.stem}_listen.png", listen_overlay(_read_image(image), from_tensor(reply.heatmap.values),
                                                             box))
    if state.as_json:
        return emit_json({"summary": reply.summary, "caption": reply.caption, "model": reply.model,
                          "peak_score": reply.peak_score,
                          "clear_source": reply.clear_source, "warnings": list(reply.warnings),
                          "box": [box.x_min_px, box.y_min_px, box.x_max_px, box.y_max_px], "overlay": str(path)})
    console.print(f"[bold]{reply.summary}[/bold]  (peak {reply.peak_score:.2f}, box "
                  f"{box.x_min_px:.0f},{box.y_min_px:.0f}-{box.x_max_px:.0f},{box.y_max_px:.0f}); overlay: {path}")
    _print_warnings(reply.warnings)


@app.command()
@rpc(flags=lambda a: {"text": "QUERY", "image": f"--image {a['image']}", "top_k": "--top-k",
                      "collection": "--collection", "metadata_filter": "--where", "model": "--model"})
def search(query: str = typer.Argument(None, help="text query"),
           image: Path = typer.Option(None, exists=True, dir_okay=False, help="image query instead of text"),
           collection: str = typer.Option("default"), top_k: int = typer.Option(5, "--top-k", "-k"),
           where: list[str] = typer.Option(None, help="only items whose metadata has KEY=VALUE (repeatable: all must hold)"),
           embedding: str = typer.Option(None, help="dial the embedding service here instead of the gateway"),
           model: str = typer.Option("", "--model", help="refuse unless the collection holds this model's vectors")
           ) -> None:
    """Search a collection by text or image."""
    if (query is None) == (image is None):
        fail_usage("give a text query or --image, not both")
    if any("=" not in w for w in where or []):
        fail_usage("--where takes KEY=VALUE")
    filters = dict(w.split("=", 1) for w in where or [])
    with state.client(embedding=embedding) as client:
        reply = client.search(query, image=image, collection=collection, top_k=top_k, where=filters, model=model)
    if state.as_json:
        return emit_json(reply)
    table = Table(Column("rank", min_width=4), uncut_column("id", [h.id for h in reply.hits]),
                  Column("score", min_width=5), Column("metadata", min_width=12),
                  title=f"{collection}: {query or image}")
    for rank, hit in enumerate(reply.hits, 1):
        table.add_row(str(rank), hit.id, f"{hit.score:.3f}", ", ".join(f"{k}={v}" for k, v in hit.metadata.items()))
    print_uncut(table)
    if reply.unknown_words:
        errors.print(f"[yellow]unknown words ignored:[/yellow] {', '.join(reply.unknown_words)}")
    _print_warnings(reply.warnings)


@app.command()
@rpc(flags={"collection": "--collection", "model": "--model"})
def index(folder: Path = typer.Argument(..., exists=True, file_okay=False),
          collection: str = typer.Option("default"), batch: int = typer.Option(32, help="images per Upsert"),
          embedding: str = typer.Option(None, help="dial the embedding service here instead of the gateway"),
          model: str = typer.Option("", "--model", help="embedding model for a new collection (from `syn models`)")
          ) -> None:
    """Add every image under a folder to a collection (id = relative path).

    Files that are not decodable images are skipped with a warning naming each one; the rest are indexed.
    """
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        fail_usage(f"no images under {folder}")
    skipped: list[dict] = []

    def skip(path: Path, reason: str) -> None:
        skipped.append({"path": str(path), "reason": reason})
        errors.print(f"[yellow]warning[/yellow]: skipped {escape(str(path))}: {escape(reason)}",
                     highlight=False, soft_wrap=True)

    size, indexed = 0, 0
    with state.client(embedding=embedding) as client, \
            Progress(console=errors, disable=state.as_json) as progress:
        task = progress.add_task(f"indexing into {collection}", total=len(files))
        for start in range(0, len(files), batch):
            chunk = []
            for path in files[start:start + batch]:
                reason = undecodable(path)
                if reason:
                    skip(path, reason)
                else:
                    chunk.append(path)
            while chunk:  # the server may still refuse an item (its pixel limit): drop it, send the rest
                items = [embedding_pb2.Item(id=str(p.relative_to(folder)), image=common_pb2.Image(
                    data=p.read_bytes()), metadata={"path": str(p)}) for p in chunk]
                try:
                    size = client.upsert(items, collection=collection, model=model).collection_size
                except grpc.RpcError as err:
                    refused = refused_items(err, len(chunk))
                    if not refused:
                        raise
                    for i, reason in refused.items():
                        skip(chunk[i], reason)
                    chunk = [p for i, p in enumerate(chunk) if i not in refused]
                    continue
                indexed += len(chunk)
                break
            progress.advance(task, len(files[start:start + batch]))
    if not indexed:
        fail("INVALID_ARGUMENT", 3, f"none of the {len(files)} images under {folder} could be indexed")
    if state.as_json:
        return emit_json({"collection": collection, "indexed": indexed, "collection_size": size,
                          "skipped": skipped})
    note = f"; skipped {len(skipped)} file{'s' * (len(skipped) != 1)} (warnings above)" if skipped else ""
    console.print(f"indexed {indexed} images into {collection} ({size} items){note}", highlight=False,
                  soft_wrap=True)


def undecodable(path: Path) -> str:
    """Why `path` is not an image the services can read ('' when it is)."""
    try:
        with Image.open(path) as picture:
            picture.load()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds; each means "skip this file"
        return f"not a decodable image ({type(exc).__name__}: {exc})"
    return ""


def refused_items(err: grpc.RpcError, count: int) -> dict[int, str]:
    """{item index: why} for the items an Upsert refused by field (`items[3].image.data`)."""
    refused = {}
    for field, description in field_violations(err):
        match = re.match(r"items\[(\d+)\]", field)
        if match and int(match.group(1)) < count:
            refused[int(match.group(1))] = f"{err.code().name}: {description}"
    return refused


@app.command()
@rpc(flags=lambda a: {"audio": f"AUDIO_FILE {a['audio_file']}", "options.n_fft": "--n-fft",
                      "options.hop_length_samples": "--hop", "options.n_mels": "--n-mels", "options.kind": "--kind"})
def features(audio_file: Path = typer.Argument(..., exists=True, dir_okay=False),
             kind: str = typer.Option("log-mel", help="magnitude, power or log-mel"),
             n_fft: int = typer.Option(0), hop: int = typer.Option(0), n_mels: int = typer.Option(0),
             save: Path = typer.Option(None, help="write the features as .npy"),
             audio: str = typer.Option(None, help="dial the audio service here instead of the gateway")) -> None:
    """STFT features of an audio file (Hamming window by default)."""
    if kind not in FEATURE_KINDS:
        fail_usage(f"--kind must be one of {', '.join(FEATURE_KINDS)}")
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
@rpc(flags={"inputs": "--input"})
def run(spec: Path = typer.Argument(..., exists=True, dir_okay=False),
        input_: list[str] = typer.Option([], "--input", "-i", help="NAME=FILE, referenced as ${inputs.NAME}")) -> None:
    """Run a pipeline spec (YAML/JSON) through the gateway, showing each step live.

    Every image and tensor a step returns is written to --out (PNG / .npy) and its path printed.
    """
    inputs = {}
    for item in input_:
        name, _, path = item.partition("=")
        if not path:
            fail_usage(f"--input needs NAME=FILE, got {item!r}")
        if not Path(path).is_file():
            fail_usage(f"--input {name}: no file {path}")
        inputs[name] = Path(path).read_bytes()
    try:
        yaml.safe_load(spec.read_text())  # a local syntax error is reported before any call
    except yaml.YAMLError as exc:
        fail_usage(f"{spec} is not YAML/JSON: {exc}")
    events = []
    table = Table("step", "state", "ms", Column("detail", overflow="fold"), title=str(spec))
    live = contextlib.nullcontext() if state.as_json else Live(table, console=errors)
    with state.client() as client, live:
        try:
            for event in client.run(spec.read_text(), inputs):
                name = gateway_pb2.StepState.Name(event.state).removeprefix("STEP_STATE_").lower()
                output, files = step_outputs(event)
                events.append({"step": event.step, "state": name, "elapsed_ms": event.elapsed_ms, "output": output,
                               "files": [str(f) for f in files], "error_code": event.error_code,
                               "error_message": event.error_message})
                if event.error_code:
                    detail = f"{event.error_code}: {event.error_message}"
                elif files:
                    detail = "wrote " + ", ".join(str(f) for f in files)
                else:
                    detail = short_summary(output)
                table.add_row(event.step, name, f"{event.elapsed_ms:.0f}" if event.elapsed_ms else "", detail)
        finally:
            if state.as_json and events:
                emit_json(events)
    if not state.as_json:  # the files on stdout, one per line, for the next command in a script
        for event in events:
            for path in event["files"]:
                console.print(path, highlight=False, soft_wrap=True)


def step_outputs(event) -> tuple[dict | None, list[Path]]:
    """A finished step's output as JSON, with every image and tensor written to --out and replaced by its path."""
    if not event.output_json:
        return None, []
    output = json.loads(event.output_json)
    files: list[Path] = []

    def visit(value, where: str):
        if isinstance(value, dict):
            if set(value) == {"data"} and isinstance(value["data"], str):  # common.Image
                data = base64.b64decode(value["data"])
                suffix = ".png" if data.startswith(b"\x89PNG") else ".jpg" if data.startswith(b"\xff\xd8") else ".bin"
                return {"path": str(write(f"{where}{suffix}", data))}
            if set(value) == {"pixels"} and isinstance(value["pixels"], dict):  # common.Image as RawPixels
                raw = value["pixels"]
                shape = [int(raw.get("height_px", 0)), int(raw.get("width_px", 0)), int(raw.get("channels") or 3)]
                pixels = np.frombuffer(base64.b64decode(raw.get("data", "")), np.uint8).reshape(shape)
                return {"path": str(write(f"{where}.png", png_bytes(pixels if shape[2] != 1 else pixels[..., 0])))}
            if "data_f32le" in value and "shape" in value:  # common.Tensor
                array = np.frombuffer(base64.b64decode(value["data_f32le"]), "<f4").reshape(
                    [int(n) for n in value["shape"]])
                path = state.out / f"{where}.npy"
                state.out.mkdir(parents=True, exist_ok=True)
                np.save(path, array)
                files.append(path)
                return {"path": str(path), "shape": list(array.shape)}
            return {k: visit(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [visit(v, f"{where}-{i}") for i, v in enumerate(value)]
        return value

    def write(name: str, data: bytes) -> Path:
        state.out.mkdir(parents=True, exist_ok=True)
        path = state.out / name
        path.write_bytes(data)
        files.append(path)
        return path

    return visit(output, re.sub(r"[^A-Za-z0-9_.-]", "_", event.step)), files


def short_summary(output: dict | None) -> str:
    """What a person wants from a step's output at a glance: its caption, else its fields in brief."""
    if not output:
        return ""
    if isinstance(output.get("caption"), str):
        return output["caption"]
    text = json.dumps(output)
    return text if len(text) <= 120 else text[:117] + "..."


@app.command()
@rpc
def models() -> None:
    """The models every service has loaded (ListModels of each, through the gateway)."""
    with state.client() as client:
        listed = client.models()
    rows = [{"service": service, "name": m.name, "task": m.task,
             "backend": common_pb2.ModelBackend.Name(m.backend).removeprefix("MODEL_BACKEND_").lower(),
             "family": m.family, "architecture": m.architecture, "source": m.source,
             "device": m.device, "default": m.is_default, "parameters": m.parameter_count,
             "weights_sha256": m.weights_sha256, "notes": m.notes} for service, infos in listed.items() for m in infos]
    if state.as_json:
        return emit_json(rows)
    cells = [[r["service"], r["name"], r["task"], r["backend"], r["family"], r["device"], "yes" if r["default"] else "",
              f"{r['parameters']:,}", r["source"]] for r in rows]
    headers = ["service", "model", "task", "backend", "family", "device", "default", "parameters", "source"]
    table = Table(*(uncut_column(h, [c[i] for c in cells]) for i, h in enumerate(headers)))
    for row in cells:
        table.add_row(*row)
    print_uncut(table)
    for r in rows:
        if r["notes"]:
            console.print(f"{r['service']}/{r['name']}: {r['notes']}", highlight=False)


@app.command()
@rpc
def collections() -> None:
    """Every collection of the embedding store: size, dimension, model and index."""
    with state.client() as client:
        listed = client.collections().collections
    rows = [{"collection": c.collection, "size": c.size, "dimension": c.dimension, "model": c.model,
             "index": c.index_kind} for c in listed]
    if state.as_json:
        return emit_json(rows)
    if not rows:
        console.print("no collections yet (syn index FOLDER --collection NAME makes one)", highlight=False)
        return
    cells = [[r["collection"], str(r["size"]), str(r["dimension"]), r["model"], r["index"]] for r in rows]
    headers = ["collection", "items", "dimension", "model", "index"]
    table = Table(*(uncut_column(h, [c[i] for c in cells]) for i, h in enumerate(headers)))
    for row in cells:
        table.add_row(*row)
    print_uncut(table)


@app.command()
@rpc(flags={"ids": "ID", "collection": "--collection"})
def delete(ids: list[str] = typer.Argument(None, help="ids to remove (as `syn index` named them)"),
           collection: str = typer.Option("default"),
           drop: bool = typer.Option(False, "--all", help="remove the whole collection instead")) -> None:
    """Remove items from a collection by id, or (--all) the whole collection."""
    if bool(ids) == drop:
        fail_usage("give the ids to delete, or --all to drop the collection (not both)")
    with state.client() as client:
        if drop:
            dropped = client.drop(collection).dropped_size
            result = {"collection": collection, "dropped": True, "deleted": dropped, "collection_size": 0}
            text = f"dropped {collection} ({dropped} items)"
        else:
            reply = client.delete(ids, collection=collection)
            result = {"collection": collection, "deleted": reply.deleted_count,
                      "collection_size": reply.collection_size}
            text = (f"deleted {reply.deleted_count} of {len(ids)} ids from {collection} "
                    f"({reply.collection_size} items left)")
    if state.as_json:
        return emit_json(result)
    console.print(text, highlight=False, soft_wrap=True)


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


from synesthesia.cli.explain import explain_app  # noqa: E402 - it uses this module's state and helpers

app.add_typer(explain_app, name="explain", help="Why a model answered: pictures of explanations (syn explain --help).")


def main(argv: list[str] | None = None) -> None:
    # --json is a global option, but people type it after the command too: move it to the front.
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--json" in argv:
        argv = ["--json"] + [a for a in argv if a != "--json"]
        Output.as_json = True
    if not Output.as_json:
        return app(args=argv, prog_name="syn")
    # Under --json, command-line mistakes are reported as JSON too.
    try:
        result = app(args=argv, prog_name="syn", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as exc:  # a usage error: bad option, missing file, ...
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        fail("USAGE", getattr(exc, "exit_code", 2), message)
    sys.exit(result if isinstance(result, int) else 0)
