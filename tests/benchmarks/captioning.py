"""Captioning: captions per second through the service (Caption, beam 3 = the default, and greedy; with
per-word attention) against the same built-in model called in-process at its best batch size.

Inputs are 32 held-out ShapesWorld scenes (64x64 PNG, mixed one- and two-object, both domains). The
service decodes the PNG, resizes, batches concurrent calls in its DynamicBatcher (one beam search
over every request in a batch) and serialises the attention maps; the in-process column starts from
decoded pixels and runs `beam_search` on a batch.
"""

from __future__ import annotations

import torch

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.pictures import png_bytes
from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2
from tests.benchmarks.harness import Scenario

SCENES = [render_scene(seed) for seed in EVAL_SEEDS[:32]]


def _caption_call(beam: int):
    def make_call(channel):
        stub = captioning_pb2_grpc.CaptioningStub(channel)
        requests = [captioning_pb2.CaptionRequest(image=common_pb2.Image(data=png_bytes(s.image)), include_attention=True,
                                                  options=captioning_pb2.CaptionOptions(beam_size=beam))
                    for s in SCENES]

        def call(i: int):
            return stub.Caption(requests[i % len(requests)], timeout=120)

        return call

    return make_call


def _in_process(beam: int):
    def make():
        from models.captioning.checkpoint import load_captioner
        from models.images import images_to_batch
        from models.captioning.decoding import beam_search

        model = load_captioner().model
        images = images_to_batch([s.image for s in SCENES], model.config.image_size)

        def run(batch: int):
            with torch.inference_mode():
                return beam_search(model, images[:batch], [beam] * batch, [model.config.max_length] * batch)

        return run

    return make


SCENARIOS = [
    Scenario(name="captioning.Caption (beam 3, attention)", module="services.captioning",
             make_call=_caption_call(3), unit="captions", in_process=_in_process(3), min_calls=48,
             calls_per_worker=4),
    Scenario(name="captioning.Caption (greedy, attention)", module="services.captioning",
             make_call=_caption_call(1), unit="captions", in_process=_in_process(1), min_calls=48,
             calls_per_worker=4),
]
