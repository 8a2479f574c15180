"""``python -m models.shapesworld generate --out DIR --count N --seed S [--size 64] [--objects 1|2|mixed]
[--domain day|night|both] [--workers W]``

Writes scenes S, S+1, ..., S+N-1 into DIR:

    DIR/images/<id>.png          the scene in its domain
    DIR/other_domain/<id>.png    the same scene in the other domain
    DIR/sketches/<id>.png        sketch-to-photo input
    DIR/masks/<id>.png           the sounding object's mask (8-bit grey, 0 or 255)
    DIR/audio/<id>.wav           1 s, 16 kHz mono, 32-bit float WAV (lossless; the clip may exceed +-1)
    DIR/scenes.jsonl             one JSON object per scene, in seed order

``--domain both`` (the default) draws each scene's domain from its seed (50/50), like
``--objects mixed``. Each JSON line: id, seed, size, image, image_other_domain, sketch,
mask, audio (paths relative to DIR), sounding_index, domain, other_domain, snr_db,
captions (canonical first) and objects (shape, colour, size, extent_px, bbox, centre, rgb).
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

from models.shapesworld.render import render_scene
from models.shapesworld.spec import SAMPLE_RATE_HZ

SUBDIRS = ("images", "other_domain", "sketches", "masks", "audio")


def scene_id(seed: int) -> str:
    return f"{seed:07d}"


def float_wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """A 32-bit float WAV with the same bytes on every run.

    libsndfile adds a PEAK chunk to float WAVs that holds the wall-clock time of
    writing, so two runs of the generator differ; the chunk is optional (readers
    ignore it) and is dropped here, keeping the fmt, fact and data chunks.
    """
    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(samples, dtype=np.float32), sample_rate, format="WAV", subtype="FLOAT")
    data = buffer.getvalue()
    chunks, offset = [], 12  # after "RIFF" <size> "WAVE"
    while offset + 8 <= len(data):
        size = struct.unpack_from("<I", data, offset + 4)[0]
        end = offset + 8 + size + (size & 1)  # chunks are padded to even sizes
        if data[offset:offset + 4] != b"PEAK":
            chunks.append(data[offset:end])
        offset = end
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_scene(out: Path, seed: int, size: int, objects: int | None, domain: str | None) -> dict:
    """Render scene `seed`, write its files under `out` and return its JSON record."""
    scene = render_scene(seed, size=size, objects=objects, domain=domain)
    sid = scene_id(seed)
    paths = {
        "image": f"images/{sid}.png", "image_other_domain": f"other_domain/{sid}.png",
        "sketch": f"sketches/{sid}.png", "mask": f"masks/{sid}.png", "audio": f"audio/{sid}.wav",
    }
    Image.fromarray(scene.image).save(out / paths["image"])
    Image.fromarray(scene.image_other_domain).save(out / paths["image_other_domain"])
    Image.fromarray(scene.sketch).save(out / paths["sketch"])
    Image.fromarray(scene.mask.astype(np.uint8) * 255).save(out / paths["mask"])
    (out / paths["audio"]).write_bytes(float_wav_bytes(scene.audio, SAMPLE_RATE_HZ))
    return {
        "id": sid, "seed": scene.seed, "size": scene.size, **paths,
        "sounding_index": scene.sounding_index, "domain": scene.domain, "other_domain": scene.other_domain,
        "snr_db": round(scene.snr_db, 4), "captions": scene.captions,
        "objects": [o.to_json() for o in scene.objects],
    }


def _write_one(args: tuple) -> dict:
    return write_scene(*args)


def generate(out: Path, count: int, seed: int, size: int = 64, objects: int | None = None,
             domain: str | None = None, workers: int = 1, progress: bool = True) -> Path:
    """Write `count` scenes starting at `seed` into `out`; returns the path of scenes.jsonl."""
    out = Path(out)
    for sub in SUBDIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(out, s, size, objects, domain) for s in range(seed, seed + count)]
    from tqdm import tqdm

    with open(out / "scenes.jsonl", "w", encoding="utf-8") as fh:
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                records = pool.map(_write_one, jobs, chunksize=32)
                for record in tqdm(records, total=count, disable=not progress, desc="scenes"):
                    fh.write(json.dumps(record) + "\n")
        else:
            for job in tqdm(jobs, disable=not progress, desc="scenes"):
                fh.write(json.dumps(_write_one(job)) + "\n")
    return out / "scenes.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.shapesworld", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write scenes as PNG/WAV files plus scenes.jsonl")
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--count", type=int, required=True)
    gen.add_argument("--seed", type=int, required=True, help="first seed (train: 0..999999, eval: 1000000..1999999)")
    gen.add_argument("--size", type=int, default=64, help="canvas size in px, 32..256")
    gen.add_argument("--objects", choices=("1", "2", "mixed"), default="mixed")
    gen.add_argument("--domain", choices=("day", "night", "both"), default="both")
    gen.add_argument("--workers", type=int, default=1)
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.count < 0 or args.seed < 0:
        parser.error("--count and --seed must be non-negative")
    path = generate(
        args.out, args.count, args.seed, size=args.size,
        objects=None if args.objects == "mixed" else int(args.objects),
        domain=None if args.domain == "both" else args.domain,
        workers=args.workers, progress=not args.quiet,
    )
    print(f"wrote {args.count} scenes to {path}", file=sys.stderr)
    return 0
