"""A test double for the runtime: a Captioning servicer whose "model" is arithmetic.

It exercises every runtime path a real service uses (decode_image, the
batcher, warm-up, errors, streaming) with knobs from the environment:
SYN_TOY_WARMUP_S (health stays NOT_SERVING this long), SYN_TOY_DELAY_MS (time
per forward pass). Each caption is derived from the image's pixels, so a mixed-up
batch is visible, and ListModels reports the batcher's forward-pass count.

Run: python -m tests.runtime.toy_service --port N
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from services.runtime import DynamicBatcher, Settings, decode_image, invalid_argument, not_found, run_service
from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2


class ToyCaptioner(captioning_pb2_grpc.CaptioningServicer):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.warmup_s = float(settings.env("TOY_WARMUP_S", "0"))
        self.delay_s = float(settings.env("TOY_DELAY_MS", "0")) / 1000.0
        self.last_time_remaining: float | None = None
        self.batcher = DynamicBatcher(
            self._forward, max_batch_size=settings.max_batch_size, max_wait_ms=settings.max_batch_wait_ms, name="toy"
        )

    async def warm_up(self) -> None:
        await asyncio.sleep(self.warmup_s)

    def _forward(self, images: list[np.ndarray]) -> list[str]:
        time.sleep(self.delay_s)
        return [f"mean {int(img.mean())} width {img.shape[1]}" for img in images]

    def _image(self, request) -> np.ndarray:
        if request.options.model not in ("", "toy"):
            raise not_found("options.model", f"unknown model {request.options.model!r}; known: toy")
        if not 0 <= request.options.beam_size <= 10:
            raise invalid_argument("options.beam_size", "must be between 0 and 10")
        return np.asarray(decode_image(request.image.data, "image.data", self.settings))

    async def Caption(self, request, context):
        # Recorded so gateway tests can see the deadline that reached this hop.
        self.last_time_remaining = context.time_remaining()
        caption = await self.batcher.submit(self._image(request))
        return captioning_pb2.CaptionResponse(caption=caption, model="toy")

    async def StreamCaption(self, request, context):
        caption = await self.batcher.submit(self._image(request))
        words = caption.split()
        for i, word in enumerate(words):
            yield captioning_pb2.StreamCaptionResponse(
                word=captioning_pb2.CaptionWord(text=word), index=i, is_final=i == len(words) - 1
            )

    async def ListModels(self, request, context):
        info = common_pb2.ModelInfo(name="toy", task="test", is_default=True)
        info.metrics["forward_calls"] = self.batcher.forward_calls
        info.metrics["items_processed"] = self.batcher.items_processed
        if self.last_time_remaining is not None:
            info.metrics["last_time_remaining_s"] = self.last_time_remaining
        return captioning_pb2.ListCaptioningModelsResponse(models=[info])

    async def close(self) -> None:
        await self.batcher.close()


if __name__ == "__main__":
    run_service(
        "toy", ToyCaptioner, captioning_pb2_grpc.add_CaptioningServicer_to_server, "synesthesia.v1.Captioning"
    )
