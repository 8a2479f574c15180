"""ExplainLocalization on the audio service: which pixels make the image sound like the clip.

The score explained is the localiser's audio-visual score: the peak cosine between the clip's embedding and
the image's location embeddings (the `peak_score` Localize reports). Grad-CAM reads the visual encoder's
last block (`visual.fuse`); occlusion paints windows with the image's background. The clip is validated
exactly as Localize validates it; the work runs in the service's ExplainLane.
"""

from __future__ import annotations

import asyncio

import numpy as np
import torch
from synesthesia.v1 import explain_pb2

from models.audio import decoding
from models.explain.targets import SoundTarget
from models.images import images_to_batch
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
        if served.details.family != "builtin":
            raise failed_precondition("model", f"{served.name!r} is a {served.details.family} model; "
                                               "ExplainLocalization explains the built-in localisers")
        localizer = served.model.model
        config = localizer.config
        clip = await servicer.clips.read(request.audio, "audio")
        if not decoding.can_resample(clip.sample_rate, config.sample_rate):
            raise invalid_argument(clip.field.replace("samples_f32le", "sample_rate_hz"),
                                   f"cannot resample {clip.sample_rate} Hz to the model's {config.sample_rate} Hz")
        if analysed_length(clip.samples.size, clip.sample_rate, config.sample_rate) < config.n_fft:
            raise invalid_argument(clip.field, f"the clip is too short; the model needs at least {config.n_fft} "
                                               f"samples at {config.sample_rate} Hz")
        device = servicer.models.device

        def decode():
            image = np.asarray(image_from_message(request.image, "image", self.settings))
            return image, images_to_batch([image], config.image_size).to(device)

        image, pixels = await asyncio.to_thread(decode)

        def work(budget):
            samples = torch.from_numpy(clip.samples).to(device)
            if clip.sample_rate != config.sample_rate:
                samples = decoding.resample(samples, clip.sample_rate, config.sample_rate)
            target = SoundTarget.of(localizer, samples.float())
            return score_and_explain(target, pixels, image, names, options, budget)

        score, explanations = await self.lane.run(work)
        return explain_pb2.ExplainLocalizationResponse(score=score, explanations=explanations, model=served.name)
