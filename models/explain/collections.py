"""Embedding analysis: nearest neighbours of an item and a 2-D map of a collection, by t-SNE (scikit-learn)
or UMAP (umap-learn, where installed: `UmapMissing` otherwise)."""

from __future__ import annotations

import warnings

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


class UmapMissing(RuntimeError):
    """umap-learn is not installed here (it is optional: `uv pip install umap-learn`)."""


def default_neighbours(count: int) -> int:
    """UMAP's usual 15 neighbours, fewer for a small map (it needs fewer than the number of points)."""
    return max(2, min(15, count - 1))


def umap(vectors: np.ndarray, neighbours: int = 0, seed: int = 0, budget: Budget | None = None) -> np.ndarray:
    """[N, D] -> [N, 2] by UMAP (McInnes et al., 2018), cosine distances, spectral initialisation; the same
    seed gives the same map (a seed makes umap-learn single-threaded, which is what a shared lane wants)."""
    (budget or Budget()).check_points(len(vectors), "max_items")
    count = len(vectors)
    if count < 3:
        raise ValueError("max_items: a UMAP map needs at least 3 items")
    neighbours = neighbours or default_neighbours(count)
    if not 2 <= neighbours < count:
        raise ValueError(f"umap_neighbors: {neighbours} must be 2 or more and below the number of items ({count})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba's and umap's notices about threads and seeds
            from umap import UMAP
    except ImportError:
        raise UmapMissing("umap-learn is not installed on this server") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layout = UMAP(n_components=2, n_neighbors=neighbours, metric="cosine", random_state=seed, n_jobs=1)
        return layout.fit_transform(np.asarray(vectors, dtype=np.float32)).astype(np.float32)
