"""The embedding's reported metric: Recall@K for text->image and image->text on held-out pairs.

    python -m models.embedding.evaluate [--pairs 1000] [--checkpoint embedding]

N held-out ShapesWorld scenes (EVAL_SEEDS, mixed one- and two-object, both domains)
each give one pair (image, canonical caption). Text->image: each caption queries the
N images; image->text: each image queries the N captions. Templated captions repeat
("a large red circle on the left" fits several scenes), so a retrieved item is a hit
when it is relevant, not only when it is the query's own partner:

* text->image: image j is relevant to caption i when caption i is one of scene j's
  reference captions;
* image->text: caption j is relevant to image i when it is one of scene i's references.

Recall@K = share of queries with a relevant item in the top K. Chance is reported two
ways: K/N (one relevant item per query) and the exact expectation of a random ranking
given each query's number of relevant items, 1 - C(N-r, K) / C(N, K). The same numbers
on the single-object scenes alone (queries and gallery both restricted) follow with the
prefix `single_`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np
import torch
from scipy.special import gammaln

from models.embedding.data import Pairs, describes, render_pairs
from models.embedding.network import JointEmbedding
from models.shapesworld import EVAL_SEEDS

KS: tuple[int, ...] = (1, 5, 10)


def eval_pairs(count: int, offset: int = 0, size: int = 64) -> Pairs:
    return render_pairs(EVAL_SEEDS[offset:offset + count], size)


@torch.no_grad()
def embed_pairs(model: JointEmbedding, pairs: Pairs, batch_size: int = 250,
                device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(image embeddings [N, D], canonical-caption embeddings [N, D]) as float32 numpy."""
    images, texts = [], []
    captions = pairs.captions
    for start in range(0, len(captions), batch_size):
        images.append(model.encode_images(pairs.images[start:start + batch_size].to(device)).float().cpu())
        texts.append(model.encode_texts(captions[start:start + batch_size]).float().cpu())
    return torch.cat(images).numpy(), torch.cat(texts).numpy()


def recall_at_k(similarity: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = KS) -> dict[int, float]:
    """similarity, relevant: [queries, gallery]. Share of queries with a relevant item in the top K."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    hits = np.take_along_axis(relevant, order, axis=1)
    first = np.where(hits.any(1), hits.argmax(1), similarity.shape[1])  # rank of the first hit
    return {k: float((first < k).mean()) for k in ks}


def chance_recall(relevant: np.ndarray, ks: Sequence[int] = KS) -> dict[int, float]:
    """Expected Recall@K of a uniformly random ranking, given each query's number of relevant items."""
    n = relevant.shape[1]
    r = relevant.sum(1)

    def log_choose(a, b):
        return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)

    out = {}
    for k in ks:
        miss = np.where(n - r >= k, np.exp(log_choose(n - r, k) - log_choose(n, k)), 0.0)
        out[k] = float((1.0 - miss).mean())
    return out


def retrieval_metrics(image_emb: np.ndarray, text_emb: np.ndarray, references: Sequence[Sequence[str]],
                      ks: Sequence[int] = KS, prefix: str = "") -> dict[str, float]:
    captions = [r[0] for r in references]
    text_fits_image = describes(captions, references).numpy()  # [image i, caption j]
    similarity = image_emb @ text_emb.T
    n = len(captions)
    metrics: dict[str, float] = {f"{prefix}pairs": n}
    for direction, sim, rel in (("t2i", similarity.T, text_fits_image.T), ("i2t", similarity, text_fits_image)):
        found, chance = recall_at_k(sim, rel, ks), chance_recall(rel, ks)
        for k in ks:
            metrics[f"{prefix}{direction}_recall@{k}"] = found[k]
            metrics[f"{prefix}{direction}_chance@{k}"] = chance[k]
        metrics[f"{prefix}{direction}_relevant_per_query"] = float(rel.sum(1).mean())
    for k in ks:
        metrics[f"{prefix}chance_k_over_n@{k}"] = k / n
    return metrics


def evaluate(model: JointEmbedding, pairs: Pairs, device: torch.device | str = "cpu") -> dict[str, float]:
    """Both directions on all pairs, then on the single-object pairs alone."""
    was_training = model.training
    model.eval()
    image_emb, text_emb = embed_pairs(model, pairs, device=device)
    model.train(was_training)
    metrics = retrieval_metrics(image_emb, text_emb, pairs.references)
    single = [i for i, count in enumerate(pairs.num_objects) if count == 1]
    if single:
        metrics.update(retrieval_metrics(image_emb[single], text_emb[single],
                                         [pairs.references[i] for i in single], prefix="single_"))
    return metrics


def main(argv: list[str] | None = None) -> int:
    from models.embedding.checkpoint import CHECKPOINT_NAME, load_embedder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--offset", type=int, default=0, help="first EVAL_SEEDS index")
    parser.add_argument("--checkpoint", default=CHECKPOINT_NAME)
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    args = parser.parse_args(argv)
    loaded = load_embedder(args.checkpoint)
    metrics = evaluate(loaded.model, eval_pairs(args.pairs, args.offset, loaded.model.config.image_size))
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for key, value in metrics.items():
            print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
