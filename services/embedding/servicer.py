"""The Embedding service: texts and images into one space, and persistent named collections to search.

EmbedTexts / EmbedImages go through one DynamicBatcher, whose batch function runs
one forward pass per (model, modality) over every request in the batch. Upsert
embeds its items the same way and writes them to the collection store (store.py:
the interface; faiss_store.py embedded by default, postgres_store.py for
PostgreSQL + pgvector), acknowledged only once durable; Search embeds its query
with the collection's model and may filter on metadata. Image decoding and store
operations run in threads, so the event loop only routes. The store's health
(a full volume, an unreachable database) is the service's health status.

A collection remembers the model (name and weights fingerprint) and dimension its
vectors come from; an Upsert naming another model, or a server whose model of
that name has other weights or another dimension, is refused with
FAILED_PRECONDITION rather than mixing two spaces in one index.

Environment: SYN_EMBEDDING_MODELS (built-in checkpoints, comma-separated, the
first is the default; default `embedding`; empty for none),
SYN_EMBEDDING_HF_DIR (a CLIPModel directory; model name = the directory's
basename or SYN_EMBEDDING_HF_NAME), SYN_EMBEDDING_STORE (where collections live:
empty = the FAISS store in SYN_EMBEDDING_INDEX_DIR, default ./run/index; a directory;
or postgresql://user:password@host:port/database), SYN_EMBEDDING_INDEX_KIND (flat-ip
or hnsw, for new collections), SYN_EMBEDDING_SNAPSHOT_EVERY (FAISS: log records
between snapshots, default 1000), SYN_EMBEDDING_SNAPSHOT_INTERVAL_S (FAISS: snapshot
pending writes this often, default 30), SYN_EMBEDDING_HNSW_M (default 32),
SYN_EMBEDDING_HNSW_EF_SEARCH (default 64), SYN_EMBEDDING_STORE_POOL_SIZE
(PostgreSQL connections, default 8), SYN_EMBEDDING_STORE_TIMEOUT_S (PostgreSQL:
connecting and each statement, default 10).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from synesthesia.tensors import to_tensor
from synesthesia.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

from models.embedding.checkpoint import load_embedder
from models.images import images_to_batch
from services.embedding.settings import EmbeddingSettings
from services.embedding.explain import EmbeddingExplainer
from services.embedding.store import (
    CollectionInfo,
    CollectionNotFound,
    CollectionStore,
    DimensionMismatch,
    StoreError,
    StoreFull,
    StoreUnavailable,
    check_name,
    echo,
    open_store,
)
from services.runtime import (
    FIT_FOR_MODELS_PX,
    DynamicBatcher,
    Settings,
    backend_infos,
    decodes_inline,
    image_from_message,
    in_thread,
    failed_precondition,
    invalid_argument,
    not_found,
    resource_exhausted,
    select_device,
    unavailable,
)
from services.runtime.acceleration import Acceleration

log = logging.getLogger(__name__)
MAX_INPUTS = 256
MAX_TEXT_CHARS = 512
MAX_ID_CHARS = 256
MAX_TOP_K = 10_000
MAX_METADATA_ENTRIES = 64
MAX_METADATA_CHARS = 4096
MAX_FILTER_ENTRIES = 16
# How often the store's health (a full volume, an unreachable database) is looked at.
STORE_HEALTH_INTERVAL_S = 1.0
# Items per forward pass: bounds activation memory when many large requests share a batch.
FORWARD_CHUNK = 256


@dataclass
class EmbedJob:
    model: str
    texts: list[str] | None = None
    pixels: torch.Tensor | None = None  # [n, 3, H, W], prepared for that model
    # Small images (and field names for errors), decoded into `pixels` inside the batch.
    images: list[tuple[common_pb2.Image, str]] | None = field(default=None, repr=False)


@dataclass
class Backend:
    name: str
    kind: int  # common_pb2.ModelBackend
    dimension: int
    fingerprint: str
    prepare: Callable[[Image.Image], torch.Tensor]
    embed_images: Callable[[torch.Tensor], torch.Tensor]
    embed_texts: Callable[[list[str]], torch.Tensor]
    sha256: str = ""
    metrics: dict = field(default_factory=dict)
    parameter_count: int = 0


def _unwrap(result):
    if isinstance(result, Exception):
        raise result
    return result


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServicer):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = select_device(settings.device)
        own = EmbeddingSettings.from_env()
        self.builtin_names = list(own.models)
        self.hf_dir = own.hf_dir
        self.hf_name = own.hf_name
        self.index_dir = own.index_dir
        self.store_url = own.store or self.index_dir
        self.store_setting = "SYN_EMBEDDING_STORE" if self.store_url != self.index_dir else "SYN_EMBEDDING_INDEX_DIR"
        self.index_kind = own.index_kind
        self.snapshot_every = own.snapshot_every
        self.snapshot_interval_s = own.snapshot_interval_s
        self.hnsw_m = own.hnsw_m
        self.hnsw_ef_search = own.hnsw_ef_search
        self.pool_size = own.store_pool_size
        self.store_timeout_s = own.store_timeout_s
        self.models: dict[str, Backend] = {}
        self.default_model = ""  # set once the models are loaded
        self.store: CollectionStore | None = None
        self.acceleration = Acceleration.from_settings(settings)
        self.batcher = DynamicBatcher(self._embed_batch, max_batch_size=settings.max_batch_size,
                                      max_wait_ms=settings.max_batch_wait_ms, name="embedding")
        self.explainer = EmbeddingExplainer(self)  # ExplainMatch, ItemNeighbors, MapCollection (explain.py)

    # --- lifecycle --------------------------------------------------------------------------

    def _load(self) -> None:
        for name in self.builtin_names:
            loaded = load_embedder(name, directory=self.settings.checkpoint_dir, device=self.device)
            model = self.acceleration.module(loaded.model)
            size = model.config.image_size
            self.models[name] = Backend(
                name, common_pb2.MODEL_BACKEND_BUILTIN, model.config.dim, loaded.sha256,
                prepare=lambda image, size=size: images_to_batch([np.asarray(image)], size)[0],
                embed_images=self.acceleration.function(model.encode_images), embed_texts=model.encode_texts,
                sha256=loaded.sha256,
                metrics=loaded.metrics, parameter_count=loaded.parameter_count)
        if self.hf_dir:
            from models.embedding.transformers_backend import TransformersEmbedder

            clip = TransformersEmbedder(self.hf_dir, self.device)
            name = self.hf_name or os.path.basename(os.path.normpath(self.hf_dir))
            self.models[name] = Backend(name, common_pb2.MODEL_BACKEND_TRANSFORMERS, clip.dimension, clip.fingerprint,
                                        clip.prepare, clip.embed_images, clip.embed_texts,
                                        parameter_count=clip.parameter_count)
        if not self.models:
            raise SystemExit("no embedding model: set SYN_EMBEDDING_MODELS and/or SYN_EMBEDDING_HF_DIR")
        self.store = open_store(self.store_url, index_kind=self.index_kind, snapshot_every=self.snapshot_every,
                                snapshot_interval_s=self.snapshot_interval_s, hnsw_m=self.hnsw_m,
                                hnsw_ef_search=self.hnsw_ef_search, pool_size=self.pool_size,
                                timeout_s=self.store_timeout_s, setting=self.store_setting)
        try:
            names = [c.name for c in self.store.list()]
            log.info("collection store %s: %d collections (%s)", self.store.location, len(names),
                     ", ".join(names) or "none")
        except StoreUnavailable as exc:  # a database that is down now: health says so until it is back
            log.warning("collection store %s: %s", self.store.location, exc)
        self.default_model = next(iter(self.models))

    async def warm_up(self) -> None:
        await asyncio.to_thread(self._load)
        image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
        jobs = []
        for name, backend in self.models.items():
            jobs += [EmbedJob(name, texts=["a large red circle"]), EmbedJob(name, pixels=backend.prepare(image)[None])]
        for result in await self.batcher.run_now(jobs):
            _unwrap(result)

    async def watch_readiness(self, set_ready) -> None:
        """SERVING while the store can take writes; NOT_SERVING (with the reason logged) while its
        volume is full or its database unreachable, and SERVING again by itself once it recovers."""
        previous: str | None = ""
        while True:
            try:
                fault = await asyncio.to_thread(self.store.fault)
            except Exception as exc:  # noqa: BLE001 - a health probe must never end the loop
                fault = f"store health check failed: {exc}"
            if fault != previous:
                if fault:
                    log.warning("NOT_SERVING: %s", fault)
                elif previous:
                    log.info("the collection store has recovered: SERVING")
                await set_ready(fault is None)
                previous = fault
            await asyncio.sleep(STORE_HEALTH_INTERVAL_S)

    async def close(self) -> None:
        await self.batcher.close()
        await self.explainer.close()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)

    # --- device work (batcher thread) -------------------------------------------------------

    def _embed_batch(self, jobs: list[EmbedJob]) -> list[np.ndarray | Exception]:
        results: list[np.ndarray | Exception] = [None] * len(jobs)  # type: ignore[list-item]
        groups: dict[tuple[str, bool], list[int]] = {}
        for i, job in enumerate(jobs):
            if job.images is not None and job.pixels is None:
                try:  # decoding here saves the call a hop to a decoding thread; a bad image fails its call only
                    job.pixels = self._prepare(self.models[job.model], job.images)
                except Exception as exc:  # noqa: BLE001 - delivered to this caller
                    results[i] = exc
                    continue
            groups.setdefault((job.model, job.texts is not None), []).append(i)
        for (name, is_text), indices in groups.items():
            backend = self.models[name]
            try:
                if is_text:
                    texts = [t for i in indices for t in jobs[i].texts]
                    with self.acceleration.autocasting(self.device):
                        parts = [backend.embed_texts(texts[s:s + FORWARD_CHUNK])
                                 for s in range(0, len(texts), FORWARD_CHUNK)]
                else:
                    pixels = torch.cat([jobs[i].pixels for i in indices])
                    with self.acceleration.autocasting(self.device):
                        chunks = [self.acceleration.images(pixels[s:s + FORWARD_CHUNK].to(self.device))
                                  for s in range(0, len(pixels), FORWARD_CHUNK)]
                        parts = [backend.embed_images(chunk) for chunk in chunks]
                vectors = torch.cat(parts).float().cpu().numpy()
                start = 0
                for i in indices:
                    count = len(jobs[i].texts) if is_text else len(jobs[i].pixels)
                    results[i] = vectors[start:start + count]
                    start += count
            except Exception as exc:  # delivered to this group's callers only
                for i in indices:
                    results[i] = exc
        return results

    # --- helpers ----------------------------------------------------------------------------

    def _check_loaded(self) -> None:
        # The runtime reports NOT_SERVING until warm-up ends, but a client that skips the health
        # check can still reach us earlier.
        if not self.default_model or self.store is None:
            raise unavailable("the embedding models and index are still loading; retry shortly")

    def _model(self, requested: str, field_name: str = "model") -> str:
        name = requested or self.default_model
        if name not in self.models:
            raise not_found(field_name, f"unknown model {requested!r}; loaded: {', '.join(self.models)}")
        return name

    @staticmethod
    def _check_text(text: str, field_name: str) -> str:
        if not text.strip():
            raise invalid_argument(field_name, "text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise invalid_argument(field_name, f"text has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
        return text

    @staticmethod
    def _check_count(count: int, field_name: str, what: str) -> None:
        if not 1 <= count <= MAX_INPUTS:
            raise invalid_argument(field_name, f"{count} {what}; send 1 to {MAX_INPUTS}")

    def _prepare(self, backend: Backend, datas: list[tuple[common_pb2.Image, str]]) -> torch.Tensor:
        """Decode and prepare images (field name per image, for errors), cheaply shrunk for the model."""
        return torch.stack([backend.prepare(image_from_message(data, name, self.settings, FIT_FOR_MODELS_PX))
                            for data, name in datas])

    async def _pixels(self, backend: Backend, datas: list[tuple[common_pb2.Image, str]]) -> torch.Tensor:
        """Decode and prepare images in a worker thread (not for a call that is already over)."""
        return await in_thread("decoding the images", self._prepare, backend, datas)

    async def _embed_texts(self, name: str, texts: list[str]) -> np.ndarray:
        return _unwrap(await self.batcher.submit(EmbedJob(name, texts=texts)))

    async def _embed_images(self, name: str, datas: list[tuple[common_pb2.Image, str]]) -> np.ndarray:
        if decodes_inline([image for image, _ in datas]):
            return _unwrap(await self.batcher.submit(EmbedJob(name, images=datas)))
        pixels = await self._pixels(self.models[name], datas)
        return _unwrap(await self.batcher.submit(EmbedJob(name, pixels=pixels)))

    async def _store(self, method, *args, mismatch_field: str = ""):
        """A store call in a worker thread, its StoreErrors turned into the matching gRPC status."""
        try:
            return await asyncio.to_thread(method, *args)
        except CollectionNotFound as exc:
            raise not_found(exc.field, str(exc)) from None
        except DimensionMismatch as exc:
            raise failed_precondition(mismatch_field or exc.field, str(exc)) from None
        except StoreFull as exc:
            raise resource_exhausted(exc.field, str(exc)) from None
        except StoreUnavailable as exc:
            raise unavailable(str(exc)) from None
        except StoreError as exc:
            raise invalid_argument(exc.field, str(exc)) from None

    @staticmethod
    def _check_name(name: str) -> str:
        try:
            return check_name(name)
        except StoreError as exc:
            raise invalid_argument("collection", str(exc)) from None

    async def _collection(self, name: str) -> CollectionInfo:
        found = await self._store(self.store.get, self._check_name(name))
        if found is None:
            raise not_found("collection", f"no collection {echo(name)}")
        return found

    def _backend_for(self, info: CollectionInfo, field_name: str = "collection") -> Backend:
        """The loaded model that made the collection's vectors, or FAILED_PRECONDITION."""
        backend = self.models.get(info.model)
        if backend is None:
            raise failed_precondition(field_name, f"collection {info.name!r} holds embeddings of model "
                                                  f"{info.model!r}, which this server has not loaded "
                                                  f"(loaded: {', '.join(self.models)})")
        if backend.dimension != info.dimension:
            raise failed_precondition(field_name, f"collection {info.name!r} holds {info.dimension}-dimensional "
                                                  f"embeddings; model {info.model!r} now gives {backend.dimension}")
        if backend.fingerprint != info.fingerprint:
            raise failed_precondition(field_name, f"collection {info.name!r} was built with other weights of "
                                                  f"model {info.model!r} (fingerprint {info.fingerprint[:12]}, "
                                                  f"loaded {backend.fingerprint[:12]}); re-index it")
        return backend

    # --- RPCs: embeddings -------------------------------------------------------------------

    async def EmbedTexts(self, request, context):
        self._check_loaded()
        name = self._model(request.model)
        self._check_count(len(request.texts), "texts", "texts")
        texts = [self._check_text(t, f"texts[{i}]") for i, t in enumerate(request.texts)]
        vectors = await self._embed_texts(name, texts)
        return embedding_pb2.EmbedTextsResponse(embeddings=to_tensor(vectors), model=name)

    async def EmbedImages(self, request, context):
        self._check_loaded()
        name = self._model(request.model)
        self._check_count(len(request.images), "images", "images")
        vectors = await self._embed_images(name, [(im, f"images[{i}]") for i, im in enumerate(request.images)])
        return embedding_pb2.EmbedImagesResponse(embeddings=to_tensor(vectors), model=name)

    async def ListModels(self, request, context):
        self._check_loaded()
        return embedding_pb2.ListEmbeddingModelsResponse(models=backend_infos(
            self.models, task="embedding", device=self.device, default=self.default_model))

    # --- RPCs: collections ------------------------------------------------------------------

    def _validate_items(self, items) -> None:
        self._check_count(len(items), "items", "items")
        seen: set[str] = set()
        for i, item in enumerate(items):
            if not item.id or len(item.id) > MAX_ID_CHARS:
                raise invalid_argument(f"items[{i}].id", f"an id has 1 to {MAX_ID_CHARS} characters, got {len(item.id)}")
            if item.id in seen:
                raise invalid_argument(f"items[{i}].id", f"id {item.id!r} occurs twice in this request")
            seen.add(item.id)
            content = item.WhichOneof("content")
            if content is None:
                raise invalid_argument(f"items[{i}].content", "set either image or text")
            if content == "text":
                self._check_text(item.text, f"items[{i}].text")
            if len(item.metadata) > MAX_METADATA_ENTRIES:
                raise invalid_argument(f"items[{i}].metadata", f"{len(item.metadata)} entries; the limit is "
                                                               f"{MAX_METADATA_ENTRIES}")
            for key, value in item.metadata.items():
                if len(key) + len(value) > MAX_METADATA_CHARS:
                    raise invalid_argument(f"items[{i}].metadata", f"entry {key[:32]!r} is longer than "
                                                                   f"{MAX_METADATA_CHARS} characters")

    async def Upsert(self, request, context):
        self._check_loaded()
        self._check_name(request.collection)
        self._validate_items(request.items)
        existing = await self._store(self.store.get, request.collection)
        if existing is not None:
            if request.model and request.model != existing.model:
                raise failed_precondition("model", f"collection {request.collection!r} holds embeddings of model "
                                                   f"{existing.model!r}, not {echo(request.model)}")
            name = self._backend_for(existing).name
        else:
            name = self._model(request.model)
        backend = self.models[name]

        text_rows = [i for i, item in enumerate(request.items) if item.WhichOneof("content") == "text"]
        image_rows = [i for i, item in enumerate(request.items) if item.WhichOneof("content") == "image"]
        vectors = np.zeros((len(request.items), backend.dimension), dtype=np.float32)
        work = []
        if text_rows:
            work.append(self._embed_texts(name, [request.items[i].text for i in text_rows]))
        if image_rows:
            work.append(self._embed_images(name, [(request.items[i].image, f"items[{i}].image")
                                                  for i in image_rows]))
        found = await asyncio.gather(*work)
        for rows, block in zip([r for r in (text_rows, image_rows) if r], found):
            vectors[rows] = block

        collection = existing or await self._store(
            self.store.create, request.collection, name, backend.fingerprint, backend.dimension)
        if collection.model != name:  # created concurrently by a request with another model
            raise failed_precondition("model", f"collection {request.collection!r} holds embeddings of model "
                                               f"{collection.model!r}, not {name!r}")
        self._backend_for(collection, "model")
        ids = [item.id for item in request.items]
        metadata = [dict(item.metadata) for item in request.items]
        # A dimension mismatch here is the model's (it gives vectors of another size than the collection's).
        written, size = await self._store(self.store.upsert, request.collection, ids, vectors, metadata,
                                          mismatch_field="model")
        return embedding_pb2.UpsertResponse(upserted_count=written, collection_size=size)

    async def Search(self, request, context):
        self._check_loaded()
        collection = await self._collection(request.collection)
        if not 1 <= request.top_k <= MAX_TOP_K:
            raise invalid_argument("top_k", f"{request.top_k} is outside 1..{MAX_TOP_K}")
        where = dict(request.metadata_filter)
        if len(where) > MAX_FILTER_ENTRIES:
            raise invalid_argument("metadata_filter", f"{len(where)} entries; the limit is {MAX_FILTER_ENTRIES}")
        for key, value in where.items():
            if not key or len(key) + len(value) > MAX_METADATA_CHARS:
                raise invalid_argument("metadata_filter", f"an entry has an empty key or is longer than "
                                                          f"{MAX_METADATA_CHARS} characters")
        query = request.WhichOneof("query")
        if query is None:
            raise invalid_argument("query", "set either text or image")
        backend = self._backend_for(collection)
        if query == "text":
            vector = (await self._embed_texts(backend.name, [self._check_text(request.text, "text")]))[0]
        else:
            vector = (await self._embed_images(backend.name, [(request.image, "image")]))[0]
        hits = await self._store(self.store.search, collection.name, vector, request.top_k, where)
        return embedding_pb2.SearchResponse(hits=[
            embedding_pb2.SearchHit(id=h.id, score=h.score, metadata=h.metadata) for h in hits])

    async def Delete(self, request, context):
        self._check_loaded()
        collection = await self._collection(request.collection)
        if not request.ids:
            raise invalid_argument("ids", "give at least one id")
        deleted, size = await self._store(self.store.delete, collection.name, list(request.ids))
        return embedding_pb2.DeleteResponse(deleted_count=deleted, collection_size=size)

    @staticmethod
    def _describe(info: CollectionInfo) -> embedding_pb2.GetCollectionResponse:
        return embedding_pb2.GetCollectionResponse(collection=info.name, size=info.size, dimension=info.dimension,
                                                   model=info.model, index_kind=info.index_kind)

    async def GetCollection(self, request, context):
        self._check_loaded()
        return self._describe(await self._collection(request.collection))

    async def ListCollections(self, request, context):
        self._check_loaded()
        found = await self._store(self.store.list)
        return embedding_pb2.ListCollectionsResponse(collections=[self._describe(info) for info in found])

    async def DropCollection(self, request, context):
        self._check_loaded()
        collection = await self._collection(request.collection)
        if not await self._store(self.store.drop, collection.name):
            raise not_found("collection", f"no collection {echo(request.collection)}")
        return embedding_pb2.DropCollectionResponse(dropped_size=collection.size)

    # --- explanations (explain.py) ----------------------------------------------------------

    async def ExplainMatch(self, request, context):
        return await self.explainer.explain_match(request)

    async def ItemNeighbors(self, request, context):
        return await self.explainer.item_neighbors(request)

    async def MapCollection(self, request, context):
        return await self.explainer.map_collection(request)
