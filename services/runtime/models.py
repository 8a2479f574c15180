"""What every servicer's ListModels reports about a loaded model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from synesthesia.v1 import common_pb2

from .device import describe as describe_device


def numeric_metrics(metrics: Mapping) -> dict[str, float]:
    """The manifest metrics that fit ModelInfo.metrics (map<string, double>): numbers, not flags or lists."""
    return {key: float(value) for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def model_info(name: str, *, task: str, backend: int, sha256: str, device, is_default: bool,
               parameter_count: int, metrics: Mapping | None = None) -> common_pb2.ModelInfo:
    """One ListModels entry: `device` is the torch device the model runs on, `metrics` its manifest metrics."""
    info = common_pb2.ModelInfo(name=name, task=task, backend=backend, weights_sha256=sha256,
                                device=describe_device(device), is_default=is_default,
                                parameter_count=int(parameter_count or 0))
    info.metrics.update(numeric_metrics(metrics or {}))
    return info


def backend_infos(backends: Mapping[str, Any], *, task: str, device, default: str) -> list[common_pb2.ModelInfo]:
    """ListModels for a servicer that keeps {name: backend}, each backend with `kind` (a
    common_pb2.ModelBackend), `sha256`, `parameter_count` and `metrics`."""
    return [model_info(name, task=task, backend=backend.kind, sha256=backend.sha256, device=device,
                       is_default=name == default, parameter_count=backend.parameter_count,
                       metrics=backend.metrics)
            for name, backend in backends.items()]
