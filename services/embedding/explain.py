"""Explanations on the embedding service: why an image matches a text (ExplainMatch), the neighbours of a
stored item (ItemNeighbors) and a t-SNE or UMAP map of a collection (MapCollection).

ExplainMatch explains the built-in image-text models (Grad-CAM on the image CNN's last block, guided
back-propagation, input gradients and occlusion of the cosine similarity); the neighbours and the map work
for every collection, whatever model made its vectors. All work runs in the service's ExplainLane.
"""

from __future__ import annotations

import asyncio

import numpy as np
from synesthesia.v1 import explain_pb2

from models.embedding.network import JointEmbedding
from models.explain import render
from models.explain.collections import UmapMissing, tsne, umap
from models.explain.hf import HFMatchTarget
from models.explain.targets import MatchTarget
from models.images import images_to_batch
from services.runtime import failed_precondition, image_from_message, invalid_argument, not_found
from services.runtime.explain import (
    ExplainLane,
    check_methods_apply,
    method_names,
    model_view,
    options_from,
    score_and_explain,
)

MATCH_METHODS = ("grad_cam", "guided_grad_cam", "guided_backprop", "gradient", "gradient_squared", "occlusion",
                 "attention_rollout")
# MapCollection's layouts (UNSPECIFIED = t-SNE).
MAP_METHODS = {explain_pb2.MAP_METHOD_UNSPECIFIED: "tsne", explain_pb2.MAP_METHOD_TSNE: "tsne",
               explain_pb2.MAP_METHOD_UMAP: "umap"}
# Hugging Face dual-encoder families ExplainMatch explains (models/explain/hf.py); SigLIP 2 feeds its model
# variable-size patch sequences rather than an image, and is not explained.
HF_MATCH_FAMILIES = ("clip", "siglip", "align")
DEFAULT_NEIGHBOURS = 10
MAX_NEIGHBOURS = 1000


class EmbeddingExplainer:
    def __init__(self, servicer) -> None:
        self.servicer = servicer
        self.settings = servicer.settings
        # The registry's live list of model batchers (filled when the models load).
        self.lane = ExplainLane(self.settings, "embedding", servicer.models.batchers)

    async def close(self) -> None:
        await self.lane.close()

    async def explain_match(self, request) -> explain_pb2.ExplainMatchResponse:
        servicer = self.servicer
        servicer._check_loaded()
        names = method_names(request.methods, MATCH_METHODS)
        options = options_from(request.options)
        text = servicer._check_text(request.text, "text")
        served = servicer._model(request.model)
        name, family = served.name, served.details.family
        network = getattr(served.model, "model", None)
        if isinstance(network, JointEmbedding):
            device = network.logit_scale.device

            def decode():
                image = np.asarray(image_from_message(request.image, "image", self.settings))
                return image, images_to_batch([image], network.config.image_size).to(device)

            def target_and_pixels(prepared):
                return MatchTarget.of(network, text), prepared
        elif family in HF_MATCH_FAMILIES:
            encoder = served.model

            def decode():
                picture = image_from_message(request.image, "image", self.settings)
                return np.asarray(picture), encoder.prepare(picture)["pixel_values"]

            def target_and_pixels(prepared):
                target = HFMatchTarget.of(encoder, text)
                return target, HFMatchTarget.images_of(prepared[None].to(encoder.device), target.mean, target.std)
        else:
            raise failed_precondition("model", f"{name!r} is a {family} model; ExplainMatch explains the built-in "
                                               f"image-text models and the Hugging Face families "
                                               f"{', '.join(HF_MATCH_FAMILIES)} (docs/explanations.md)")

        image, prepared = await asyncio.to_thread(decode)

        def work(budget):
            target, pixels = target_and_pixels(prepared)
            check_methods_apply(names, target, name, family)
            return score_and_explain(target, pixels, model_view(served.model, pixels, image), names, options, budget)

        similarity, explanations = await self.lane.run(work)
        return explain_pb2.ExplainMatchResponse(similarity=similarity, explanations=explanations, model=name)

    @staticmethod
    def _first_items(store, name: str, limit: int) -> list:
        """Up to `limit` stored items (id, vector, metadata), in the store's order."""
        found = []
        for batch in store.items(name, batch_size=min(1000, limit)):
            found.extend(batch[:limit - len(found)])
            if len(found) >= limit:
                break
        return found

    async def item_neighbors(self, request) -> explain_pb2.ItemNeighborsResponse:
        servicer = self.servicer
        servicer._check_loaded()
        top_k = request.top_k or DEFAULT_NEIGHBOURS
        if not 1 <= top_k <= MAX_NEIGHBOURS:
            raise invalid_argument("top_k", f"{request.top_k} is outside 1..{MAX_NEIGHBOURS} (0 = {DEFAULT_NEIGHBOURS})")
        if not request.id:
            raise invalid_argument("id", "give the id of a stored item")
        info = await servicer._collection(request.collection)
        item = await servicer._store(servicer.store.item, info.name, request.id)
        if item is None:
            raise not_found("id", f"no item {request.id[:64]!r} in collection {info.name!r}")
        hits = await servicer._store(servicer.store.search, info.name, item.vector, top_k + 1)
        return explain_pb2.ItemNeighborsResponse(neighbors=[
            explain_pb2.Neighbor(id=h.id, score=h.score, metadata=h.metadata) for h in hits if h.id != request.id][:top_k])

    async def map_collection(self, request) -> explain_pb2.MapCollectionResponse:
        servicer = self.servicer
        servicer._check_loaded()
        limit = self.lane.limits["max_points"]
        if request.max_items < 0 or request.max_items == 1:
            raise invalid_argument("max_items", f"{request.max_items}: map 2 or more items (0 = all, up to {limit})")
        if request.max_items > limit:
            raise invalid_argument("max_items", f"{request.max_items} is more than {limit} "
                                                "(limit set by SYN_EXPLAIN_MAX_POINTS)")
        if request.perplexity < 0:
            raise invalid_argument("perplexity", f"{request.perplexity:g} is negative (0 = automatic)")
        if request.umap_neighbors < 0:
            raise invalid_argument("umap_neighbors", f"{request.umap_neighbors} is negative (0 = automatic)")
        if request.method not in MAP_METHODS:
            raise invalid_argument("method", f"{request.method} is not a map method; choose TSNE or UMAP")
        method = MAP_METHODS[request.method]
        info = await servicer._collection(request.collection)
        items = await servicer._store(self._first_items, servicer.store, info.name, request.max_items or limit)
        if len(items) < 2:
            raise failed_precondition("collection", f"{info.name!r} holds {len(items)} item(s); a map needs at least 2")
        items.sort(key=lambda item: item.id)

        def work(budget):
            vectors = np.stack([item.vector for item in items])
            try:
                if method == "umap":
                    points = umap(vectors, request.umap_neighbors, int(request.seed), budget)
                else:
                    points = tsne(vectors, request.perplexity, int(request.seed), budget)
            except UmapMissing as exc:
                raise failed_precondition("method", f"UMAP: {exc} (install umap-learn, or use TSNE)") from None
            except ValueError as exc:
                field, _, why = str(exc).partition(": ")
                raise invalid_argument(field, why) from None
            labels = [item.metadata.get(request.label_key, "") if request.label_key else "" for item in items]
            picture = render.scatter(points, [label or "(none)" for label in labels])
            return explain_pb2.MapCollectionResponse(
                points=[explain_pb2.MapPoint(id=item.id, x=float(p[0]), y=float(p[1]), label=label)
                        for item, p, label in zip(items, points, labels)],
                picture_png=render.png_bytes(picture), method=method)

        return await self.lane.run(work)
