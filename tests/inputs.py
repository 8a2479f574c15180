"""Input files a user would hand the CLI, the playground or a container stack: a scene, its sound, a gallery."""

from __future__ import annotations

import io
from pathlib import Path

import soundfile

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.pictures import png_bytes


def write_inputs(folder: Path, scene_seed_index: int, gallery_seed_index: int, *, wav_subtype: str | None = None):
    """scene.png (two objects, day), sound.wav (its sounding object), junk.png, gallery/g0..g5.png: (folder, scene)."""
    scene = render_scene(EVAL_SEEDS[scene_seed_index], objects=2, domain="day")
    (folder / "scene.png").write_bytes(png_bytes(scene.image))
    buffer = io.BytesIO()
    soundfile.write(buffer, scene.audio, 16000, format="WAV", subtype=wav_subtype)
    (folder / "sound.wav").write_bytes(buffer.getvalue())
    (folder / "junk.png").write_bytes(b"not an image")
    gallery = folder / "gallery"
    gallery.mkdir()
    for i in range(6):
        (gallery / f"g{i}.png").write_bytes(
            png_bytes(render_scene(EVAL_SEEDS[gallery_seed_index + i], objects=1).image))
    return folder, scene
