"""The chained demo behind `make demo`: one example of each gateway call, pictures in out/demo.

Inputs are held-out ShapesWorld scenes rendered on the spot, so the demo needs
nothing but the running stack.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import grpc
import numpy as np
import soundfile
from rich.console import Console
from rich.table import Table

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.pictures import attention_overlay, contact_sheet, heatmap_overlay, png_bytes
from synesthesia.tensors import from_tensor
from synesthesia.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc, gateway_pb2, gateway_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
console = Console()


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, 16000, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def sample_scene():
    """The held-out two-object day scene the demo listens to and leaves as out/demo/inputs/scene.png."""
    return render_scene(EVAL_SEEDS[7], objects=2, domain="day")


def write_inputs(folder: Path) -> dict[str, Path]:
    """The sample inputs the README's and docs' examples use, left in out/demo/inputs/:
    scene.png (two held-out objects, day), sound.wav (the sound of one of them), sketch.png (the scene's
    sketch, for sketch2photo) and photos/ (twelve one-object scenes to index and search)."""
    folder.mkdir(parents=True, exist_ok=True)
    scene = sample_scene()
    files = {"scene": folder / "scene.png", "sound": folder / "sound.wav", "sketch": folder / "sketch.png",
             "photos": folder / "photos"}
    files["scene"].write_bytes(png_bytes(scene.image))
    files["sound"].write_bytes(_wav(scene.audio))
    files["sketch"].write_bytes(png_bytes(scene.sketch))
    files["photos"].mkdir(exist_ok=True)
    for i in range(12):
        photo = render_scene(EVAL_SEEDS[200 + i], objects=1, domain="day")
        words = photo.captions[0].split()  # "a small red circle ..." -> small-red-circle
        (files["photos"] / f"{'-'.join(words[1:4])}-{i:02d}.png").write_bytes(png_bytes(photo.image))
    return files


def run_demo(gateway_target: str, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    inputs = write_inputs(out / "inputs")
    summary = Table(title="Synesthesia demo (through the gateway)")
    summary.add_column("call")
    summary.add_column("result")
    summary.add_column("pictures")
    report: dict = {}
    with grpc.insecure_channel(gateway_target, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        gateway = gateway_pb2_grpc.GatewayStub(channel)

        # Index a few held-out scenes so Describe has neighbours to find (the gateway forwards Upsert).
        scenes = [render_scene(EVAL_SEEDS[i], objects=1, domain="day") for i in range(24)]
        embedding_pb2_grpc.EmbeddingStub(channel).Upsert(embedding_pb2.UpsertRequest(
            collection="demo",
            items=[embedding_pb2.Item(id=f"scene-{s.seed}", image=common_pb2.Image(data=png_bytes(s.image)),
                                      metadata={"caption": s.captions[0]}) for s in scenes],
        ), timeout=120)

        query = render_scene(EVAL_SEEDS[100], objects=2, domain="day")
        described = gateway.Describe(gateway_pb2.DescribeRequest(
            image=common_pb2.Image(data=png_bytes(query.image)), collection="demo", top_k=3), timeout=60)
        overlays = [attention_overlay(query.image, from_tensor(w.attention.values)) for w in described.caption.words]
        sheet = contact_sheet([query.image] + overlays, ["input"] + [w.text for w in described.caption.words],
                              columns=6, scale=3)
        (out / "describe_attention.png").write_bytes(png_bytes(sheet))
        neighbours = ", ".join(f"{h.metadata['caption']} ({h.score:.2f})" for h in described.neighbours)
        summary.add_row("Describe", f"'{described.caption.caption}' (truth: '{query.captions[0]}'); "
                                    f"neighbours: {neighbours}", "describe_attention.png")
        report["describe"] = {"caption": described.caption.caption, "truth": query.captions[0]}

        try:
            imagined = gateway.Imagine(gateway_pb2.ImagineRequest(prompt="a large red circle", image_count=4,
                                                                  seed=7), timeout=120)
        except grpc.RpcError as err:  # e.g. NOT_FOUND while the text2image checkpoint is not shipped
            summary.add_row("Imagine 'a large red circle' x4", f"{err.code().name}: {err.details()}", "")
            report["imagine"] = f"{err.code().name}: {err.details()}"
        else:
            pictures = [_decode(i.image.data) for i in imagined.images]
            (out / "imagine.png").write_bytes(png_bytes(contact_sheet(
                pictures, [f"{i.caption} ({i.prompt_agreement:.2f})" for i in imagined.images], columns=2, scale=3)))
            summary.add_row("Imagine 'a large red circle' x4",
                            "; ".join(f"'{i.caption}' agreement {i.prompt_agreement:.2f}" for i in imagined.images),
                            "imagine.png")
            report["imagine"] = [i.caption for i in imagined.images]

        scene = sample_scene()
        heard = gateway.Listen(gateway_pb2.ListenRequest(
            image=common_pb2.Image(data=png_bytes(scene.image)),
            audio=common_pb2.AudioClip(encoded=_wav(scene.audio))), timeout=60)
        overlay = heatmap_overlay(scene.image, from_tensor(heard.heatmap.values))
        (out / "listen.png").write_bytes(png_bytes(contact_sheet(
            [scene.image, overlay], ["scene", heard.summary], columns=2, scale=4)))
        truth = scene.objects[scene.sounding_index]
        summary.add_row("Listen", f"{heard.summary} (truth: the {truth.size} {truth.colour} {truth.shape})",
                        "listen.png")
        report["listen"] = heard.summary

        translations, labels = [], []
        for model, source in (("day2night", scene.image), ("sketch2photo", scene.sketch)):
            try:
                done = gateway.Translate(gateway_pb2.TranslateRequest(
                    image=common_pb2.Image(data=png_bytes(source)), model=model), timeout=60)
            except grpc.RpcError as err:
                summary.add_row(f"Translate {model}", f"{err.code().name}: {err.details()}", "")
                continue
            translations += [source, _decode(done.image.data)]
            labels += [f"{model} input", done.caption]
            summary.add_row(f"Translate {model}", f"'{done.caption}'", "translate.png")
        if translations:
            (out / "translate.png").write_bytes(png_bytes(contact_sheet(translations, labels, columns=2, scale=3)))

        spec = (ROOT / "docs" / "examples" / "pipeline.yaml").read_text()
        events = []
        try:
            for event in gateway.RunPipeline(gateway_pb2.RunPipelineRequest(
                    spec=spec, inputs={"scene": png_bytes(scene.image)}), timeout=120):
                events.append(event)
            outcome = "finished"
        except grpc.RpcError as err:
            outcome = f"{err.code().name}: {err.details()}"
        steps = ", ".join(f"{e.step} {gateway_pb2.StepState.Name(e.state).removeprefix('STEP_STATE_').lower()}"
                          + (f" {e.elapsed_ms:.0f} ms" if e.elapsed_ms else "") for e in events)
        summary.add_row("RunPipeline docs/examples/pipeline.yaml", f"{outcome}: {steps}", "")
        report["pipeline"] = outcome
    console.print(summary)
    (out / "summary.json").write_text(json.dumps(report, indent=2))
    console.print(f"pictures in {out}; sample inputs for the README's examples in {inputs['scene'].parent}")
    return report
