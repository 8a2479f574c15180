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
from models.explain.targets import MatchTarget
from models.images import images_to_batch
from services.runtime import failed_precondition, image_from_message, invalid_argument, not_found
from services.runtime.explain import ExplainLane, method_names, options_from, score_and_explain

MATCH_METHODS = ("grad_cam", "guided_grad_cam", "guided_backprop", "gradient", "gradient_squared", "occlusion")
# MapCollection's layouts (UNSPECIFIED = t-SNE).
MAP_METHODS = {explain_pb2.MAP_METHOD_UNSPECIFIED: "tsne", explain_pb2.MAP_METHOD_TSNE: "tsne",
               explain_pb2.MAP_METHOD_UMAP: "umap"}
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

    def _network(self, name: str) -> JointEmbedding:
        """The built-in network behind a loaded model (its encoder's bound method knows it)."""
        network = getattr(self.servicer.models.get(name).model, "model", None)
        if not isinstance(network, JointEmbedding):
            raise failed_precondition("model", f"{name!r} is not a built-in model; ExplainMatch explains the "
                                               "built-in image-text models (docs/explanations.md)")
        return network

    async def explain_match(self, request) -> explain_pb2.ExplainMatchResponse:
        servicer = self.servicer
        servicer._check_loaded()
        names = method_names(request.methods, MATCH_METHODS)
        options = options_from(request.options)
        text = servicer._check_text(request.text, "text")
        name = servicer._model(request.model).name
        network = self._network(name)
        device = network.logit_scale.device

        def decode():
            image = np.asarray(image_from_message(request.image, "image", self.settings))
            return image, images_to_batch([image], network.config.image_size).to(device)

        image, pixels = await asyncio.to_thread(decode)

        def work(budget):
            return score_and_explain(MatchTarget.of(network, text), pixels, image, names, options, budget)

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
