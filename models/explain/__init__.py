"""Explanations: why a model answered. Plain PyTorch, no gRPC (services/*/explain.py serve these).

    from models.explain import Options, explain, targets
    target = targets.JudgeTarget.of(judge.net, "shape", 2)
    maps = explain("grad_cam", target, images)          # [N,H,W], larger = more evidence

Modules: `attribution` (Grad-CAM, guided back-propagation, input gradients, occlusion, CAM),
`targets` (the score each model's explanation is about), `methods` (the names), `visualise` (class
visualisation, first-layer filters, maximally activating patches), `collections` (nearest neighbours,
t-SNE), `render` (overlays and pictures), `metrics` (pointing game, deletion/insertion, sanity check),
`budget` (per-call limits), `evaluate` (the measurements in docs/explanations.md).
"""

from models.explain.budget import Budget, BudgetError
from models.explain.methods import METHODS, Options, applies, explain

__all__ = ["METHODS", "Budget", "BudgetError", "Options", "applies", "explain"]
