"""ExplainLocalization on the audio service: which pixels make the image sound like the clip.

The score explained is the localiser's audio-visual score: the peak cosine between the clip's embedding and
the image's location embeddings (the `peak_score` Localize reports). The model gives the pixels and the
score (`explain_pixels`, `explain_target`: the built-in's Grad-CAM reads its visual encoder's last block
`visual.fuse`, EZ-VSL's its image ResNet's `layer4`); occlusion paints windows with the image's
background. The clip is validated as Localize validates it; the work runs in the service's ExplainLane.
"""

from __future__ import annotations

import asyncio

import numpy as np
import torch
from synesthesia.v1 import explain_pb2

from models.audio import decoding
from services.runtime import failed_precondition, image_from_message, invalid_argument
from services.runtime.explain import ExplainLane, method_names, options_from, score_and_explain

SOUND_METHODS = ("grad_cam", "guided_grad_cam", "guided_backprop", "gradient", "gradient_squared", "occlusion")


class AudioExplainer:
    def __init__(self, servicer) -> None:
        self.servicer = servicer
        self.settings = servicer.settings
        # The registry's live list of model batchers (filled when the models load), then the features'.
        self.lane = ExplainLane(self.settings, "audio", servicer.models.batchers)
        servicer.models.batchers.append(servicer.feature_batcher)

    async def close(self) -> None:
        await self.lane.close()

    async def explain_localization(self, request) -> explain_pb2.ExplainLocalizationResponse:
        from services.audio.servicer import analysed_length

        servicer = self.servicer
        names = method_names(request.methods, SOUND_METHODS)
        options = options_from(request.options)
        served = servicer.models.get(request.model)
        model = served.model
        if not hasattr(model, "explain_target"):
            raise failed_precondition("model", f"{served.name!r} is a {served.details.family} model, which "
                                               "ExplainLocalization cannot open (models/audio/interface.py)")
        clip = await servicer.clips.read(request.audio, "audio")
        rate, needed = model.sample_rate, model.min_samples
        if not decoding.can_resample(clip.sample_rate, rate):
            raise invalid_argument(clip.field.replace("samples_f32le", "sample_rate_hz"),
                                   f"cannot resample {clip.sample_rate} Hz to the model's {rate} Hz")
        if analysed_length(clip.samples.size, clip.sample_rate, rate) < needed:
            raise invalid_argument(clip.field, f"the clip is too short; the model needs at least {needed} "
                                               f"samples at {rate} Hz")

        def decode():
            image = np.asarray(image_from_message(request.image, "image", self.settings))
            return image, model.explain_pixels(image)

        image, pixels = await asyncio.to_thread(decode)

        def work(budget):
            samples = clip.samples
            if clip.sample_rate != rate:
                samples = decoding.resample(torch.from_numpy(samples), clip.sample_rate, rate).numpy()
            return score_and_explain(model.explain_target(samples), pixels, image, names, options, budget)

        score, explanations = await self.lane.run(work)
        return explain_pb2.ExplainLocalizationResponse(score=score, explanations=explanations, model=served.name)
