"""Embedding analysis: nearest neighbours of an item and a 2-D t-SNE map of a collection (scikit-learn)."""

from __future__ import annotations

import numpy as np

from models.explain.budget import Budget


def nearest_neighbours(vectors: np.ndarray, query: int, k: int) -> list[tuple[int, float]]:
    """(index, cosine) of the `k` rows of unit-length `vectors` closest to row `query`, itself excluded."""
    scores = vectors @ vectors[query]
    order = [i for i in np.argsort(-scores, kind="stable") if i != query][:k]
    return [(int(i), float(scores[i])) for i in order]


def default_perplexity(count: int) -> float:
    """t-SNE needs perplexity < points; a third of them keeps small maps stable, capped at the usual 30."""
    return float(min(30.0, max(1.0, (count - 1) / 3)))


def tsne(vectors: np.ndarray, perplexity: float = 0.0, seed: int = 0, budget: Budget | None = None) -> np.ndarray:
    """[N, D] -> [N, 2] by Barnes-Hut t-SNE (van der Maaten, 2014), cosine distances, PCA
    initialisation; the same seed gives the same map."""
    from sklearn.manifold import TSNE

    count = len(vectors)
    (budget or Budget()).check_points(count, "max_items")
    if count < 2:
        raise ValueError("max_items: a map needs at least 2 items")
    perplexity = perplexity or default_perplexity(count)
    if not 0 < perplexity < count:
        raise ValueError(f"perplexity: {perplexity:g} must be above 0 and below the number of items ({count})")
    embedding = TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed,
                     max_iter=500)
    return embedding.fit_transform(np.asarray(vectors, dtype=np.float32)).astype(np.float32)
