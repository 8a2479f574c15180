"""ShapesWorld: the project's own procedural multimodal world (../../../shared/SHAPESWORLD.md).

    from models.shapesworld import render_scene, ShapesWorldDataset, TRAIN_SEEDS, EVAL_SEEDS
    scene = render_scene(1_000_123, size=64, objects=1, domain="night")
    scene.image, scene.image_other_domain, scene.sketch, scene.mask, scene.audio, scene.captions

Modules: `spec` (every constant), `render` (scenes and object layouts), `captions`,
`audio` (object signatures), `dataset` (on-the-fly torch Dataset), `cli`
(``python -m models.shapesworld generate ...``). User doc: docs/shapesworld.md.
"""

from models.shapesworld.audio import object_signature
from models.shapesworld.captions import caption_for, position_phrase, reference_captions, relation
from models.shapesworld.dataset import ALL_KEYS, ShapesWorldDataset, image_tensor
from models.shapesworld.render import (
    Scene, SceneObject, object_masks, other_domain, render_objects, render_scene,
)
from models.shapesworld.spec import (
    AMPLITUDES, BACKGROUND_RANGES, CLIP_SAMPLES, COLOUR_JITTER, COLOUR_NAMES, COLOURS, DOMAINS,
    EVAL_SEEDS, FREQUENCIES_HZ, INVERSE_RELATION, POSITIONS, RELATIONS, SAMPLE_RATE_HZ, SHAPES,
    SIZE_RANGES_PX, SIZES, TRAIN_SEEDS, VOCABULARY, WAVEFORMS,
)

__all__ = [
    "ALL_KEYS", "AMPLITUDES", "BACKGROUND_RANGES", "CLIP_SAMPLES", "COLOUR_JITTER", "COLOUR_NAMES", "COLOURS",
    "DOMAINS", "EVAL_SEEDS", "FREQUENCIES_HZ", "INVERSE_RELATION", "POSITIONS", "RELATIONS", "SAMPLE_RATE_HZ",
    "SHAPES", "SIZE_RANGES_PX", "SIZES", "TRAIN_SEEDS", "VOCABULARY", "WAVEFORMS", "Scene", "SceneObject",
    "ShapesWorldDataset", "caption_for", "image_tensor", "object_masks", "object_signature", "other_domain",
    "position_phrase", "reference_captions", "relation", "render_objects", "render_scene",
]
