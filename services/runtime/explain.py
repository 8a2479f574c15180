"""The explanation lane: explanations run on the service's device without starving its normal calls.

An explanation costs tens to hundreds of forward/backward passes, so it never enters the model's
DynamicBatcher. Each service has one `ExplainLane`: its own queue (at most `SYN_EXPLAIN_MAX_PENDING`
waiting or running; more are refused with RESOURCE_EXHAUSTED), its own worker thread (one explanation at a
time), and between chunks of work (each occlusion batch, each gradient-ascent step) it gives way while the
normal batcher has calls queued or running, so those keep their latency. Every call gets a `Budget` from
the `SYN_EXPLAIN_*` settings, checked before the work starts; a cancelled call stops at the next chunk.

Settings: SYN_EXPLAIN_MAX_PENDING (4), SYN_EXPLAIN_MAX_EVALUATIONS (1024 forward passes per occlusion map),
SYN_EXPLAIN_MAX_STEPS (500 gradient-ascent steps), SYN_EXPLAIN_MAX_SCENES (512 scenes per patch search),
SYN_EXPLAIN_MAX_POINTS (2000 points per collection map), SYN_EXPLAIN_MAX_SECONDS (60 s per call).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import grpc
import numpy as np

from models.explain import METHODS, Budget, BudgetError, Options, explain
from models.explain import render
from models.explain.methods import DEFAULT_OCCLUSION_STRIDE_PX, DEFAULT_OCCLUSION_WINDOW_PX
from synesthesia.tensors import to_tensor
from synesthesia.v1 import common_pb2, explain_pb2

from .errors import ServiceError, failed_precondition, invalid_argument, resource_exhausted
from .settings import Settings, read_settings

R = TypeVar("R")
# Proto enum value -> models.explain method name.
METHOD_NAMES = {
    explain_pb2.EXPLAIN_METHOD_GRAD_CAM: "grad_cam",
    explain_pb2.EXPLAIN_METHOD_GUIDED_GRAD_CAM: "guided_grad_cam",
    explain_pb2.EXPLAIN_METHOD_GUIDED_BACKPROP: "guided_backprop",
    explain_pb2.EXPLAIN_METHOD_GRADIENT: "gradient",
    explain_pb2.EXPLAIN_METHOD_GRADIENT_SQUARED: "gradient_squared",
    explain_pb2.EXPLAIN_METHOD_OCCLUSION: "occlusion",
    explain_pb2.EXPLAIN_METHOD_CAM: "cam",
    explain_pb2.EXPLAIN_METHOD_ATTENTION: "attention",
    explain_pb2.EXPLAIN_METHOD_ATTENTION_ROLLOUT: "attention_rollout",
}
assert set(METHOD_NAMES.values()) == set(METHODS)
GIVE_WAY_MAX_S = 0.25  # the longest one chunk waits for normal calls before it goes on anyway
# Bound on the occlusion window and stride (the number of positions is bounded by SYN_EXPLAIN_MAX_EVALUATIONS).
MAX_OCCLUSION_PX = 512


@dataclass(frozen=True)
class ExplainSettings:
    """SYN_EXPLAIN_*: read once per service, each bad value stopping start-up with its variable's name."""

    # Explanations queued or running per service; more are refused.
    max_pending: int = field(default=4, metadata={"min": 1})
    # Forward passes of one occlusion map.
    max_evaluations: int = field(default=1024, metadata={"min": 1})
    # Gradient-ascent steps of one class visualisation.
    max_steps: int = field(default=500, metadata={"min": 1})
    # Scenes one maximally-activating-patches search reads.
    max_scenes: int = field(default=512, metadata={"min": 1})
    # Items in one t-SNE map.
    max_points: int = field(default=2000, metadata={"min": 2})
    # Wall-clock seconds of one explanation; 0 = no limit.
    max_seconds: float = field(default=60.0, metadata={"min": 0})


class ExplainLane:
    def __init__(self, settings: Settings, name: str, give_way_to: Sequence = ()) -> None:
        del settings  # the lane's own settings are SYN_EXPLAIN_*, typed below
        self.name = name
        own = read_settings(ExplainSettings, prefix="SYN_EXPLAIN_")
        self.max_pending = own.max_pending
        self.limits = {k: v for k, v in asdict(own).items() if k != "max_pending"}
        self.give_way_to = give_way_to  # DynamicBatchers whose calls go first (a live sequence: kept, not copied)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"explain-{name}")
        self.pending = 0
        self.completed = 0

    def budget(self) -> Budget:
        return Budget(**self.limits, between_chunks=self._give_way)

    def _give_way(self) -> None:
        waited = 0.0
        while waited < GIVE_WAY_MAX_S and any(b.busy for b in self.give_way_to):
            time.sleep(0.005)
            waited += 0.005

    async def run(self, work: Callable[[Budget], R]) -> R:
        """`work(budget)` in the lane's thread; BudgetError becomes a status naming the field and setting."""
        if self.pending >= self.max_pending:
            raise resource_exhausted("request", f"{self.pending} explanations are already queued or running on "
                                                f"{self.name}; retry later (limit set by SYN_EXPLAIN_MAX_PENDING)")
        self.pending += 1
        budget = self.budget()
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, lambda: work(budget.start()))
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                budget.cancelled.set()  # the worker stops at its next chunk
                raise
        except BudgetError as exc:
            code = grpc.StatusCode.DEADLINE_EXCEEDED if exc.timed_out else grpc.StatusCode.INVALID_ARGUMENT
            raise ServiceError(code, str(exc), [(exc.field, str(exc))]) from None
        finally:
            self.pending -= 1
            self.completed += 1

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def method_names(methods: Sequence[int], allowed: Sequence[str], field: str = "methods") -> list[str]:
    """Proto enum values -> method names, refusing none, UNSPECIFIED, duplicates and methods that do not apply."""
    if not methods:
        raise invalid_argument(field, f"give at least one method; this RPC takes {', '.join(allowed)}")
    names = []
    for i, value in enumerate(methods):
        name = METHOD_NAMES.get(value)
        if name is None or name not in allowed:
            label = explain_pb2.ExplainMethod.Name(value) if value in explain_pb2.ExplainMethod.values() else value
            raise invalid_argument(f"{field}[{i}]", f"{label} does not apply here; this RPC takes "
                                                    f"{', '.join(n.upper() for n in allowed)}")
        if name in names:
            raise invalid_argument(f"{field}[{i}]", f"{name.upper()} is requested twice")
        names.append(name)
    return names


def check_methods_apply(names: Sequence[str], target, model: str, family: str, field: str = "methods") -> None:
    """FAILED_PRECONDITION naming the method and the model for a method this RPC takes but this model cannot
    give (guided back-propagation without ReLUs, attention rollout without global self-attention, ...)."""
    from models.explain.methods import why_not

    for i, name in enumerate(names):
        reason = why_not(name, target)
        if reason:
            raise failed_precondition(f"{field}[{i}]", f"{name.upper()} does not apply to model {model!r} ({family}): "
                                                       f"{reason} (docs/explanations.md lists what applies where)")


def model_view(model, pixels, image: np.ndarray) -> np.ndarray:
    """The picture an overlay is drawn on: the caller's image, or, when the model's image processor crops,
    the crop the model saw (pixels [1,3,H,W] in [0,1]), so the map lies over what it explains."""
    processor = getattr(model, "processor", None)
    if processor is not None and getattr(processor, "do_center_crop", False):
        return (pixels[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return image


def options_from(message: explain_pb2.ExplainOptions, field: str = "options") -> Options:
    """The request's occlusion window and stride (0 = the default for the model's input size), bounded."""
    for name in ("occlusion_window_px", "occlusion_stride_px"):
        value = getattr(message, name)
        if not 0 <= value <= MAX_OCCLUSION_PX:
            default = DEFAULT_OCCLUSION_WINDOW_PX if name == "occlusion_window_px" else DEFAULT_OCCLUSION_STRIDE_PX
            raise invalid_argument(f"{field}.{name}", f"{value} is outside 1..{MAX_OCCLUSION_PX} (0 = {default} "
                                                      f"on a 64 px input, the same share of a larger one)")
    return Options(occlusion_window_px=message.occlusion_window_px, occlusion_stride_px=message.occlusion_stride_px)


def explanation(method: str, heatmap: np.ndarray, image: np.ndarray, seconds: float) -> explain_pb2.Explanation:
    """The message for one map [h,w] of `image` (uint8 [H,W,3], the caller's image at its own size)."""
    value = next(v for v, n in METHOD_NAMES.items() if n == method)
    height, width = image.shape[:2]
    return explain_pb2.Explanation(
        method=value,
        heatmap=common_pb2.Heatmap(values=to_tensor(np.ascontiguousarray(heatmap, dtype=np.float32)),
                                   image_width_px=width, image_height_px=height),
        overlay_png=render.png_bytes(render.overlay(image, heatmap)),
        compute_seconds=seconds)


def score_and_explain(target, pixels, image: np.ndarray, methods: Sequence[str], options: Options,
                      budget: Budget) -> tuple[float, list[explain_pb2.Explanation]]:
    """The target's score for `pixels` (batch of one) and one timed explanation per method, in the lane's
    worker: the call's time budget is checked before each method, so a long list stops where it runs out."""
    import torch

    options.budget = budget
    with torch.no_grad():
        score = float(target(pixels)[0])
    out = []
    for method in methods:
        budget.check_time("methods")
        started = time.perf_counter()
        heat = explain(method, target, pixels, options)[0].numpy()
        out.append(explanation(method, heat, image, time.perf_counter() - started))
    return score, out
