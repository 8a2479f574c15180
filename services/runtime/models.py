"""ModelInfo helpers (the registry, registry.py, builds every ListModels)."""

from __future__ import annotations

from collections.abc import Mapping


def numeric_metrics(metrics: Mapping) -> dict[str, float]:
    """The manifest metrics that fit ModelInfo.metrics (map<string, double>): numbers, not flags or lists."""
    return {key: float(value) for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}
