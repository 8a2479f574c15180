"""The Embedding service: texts and images into one space, and persistent named collections to search.

EmbedTexts / EmbedImages go through the model's own DynamicBatcher (the runtime's
ModelRegistry, services/runtime/registry.py), whose batch function runs one
forward pass per modality over every request in the batch. Upsert
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

Environment: SYN_MODEL_REPOSITORY (the model entries), SYN_EMBEDDING_MODELS
(entries to serve, comma-separated; default: every embedding entry),
SYN_EMBEDDING_HF_DIR (shorthand for one Hugging Face dual-encoder directory:
CLIP, SigLIP, SigLIP 2, ALIGN; model name = the directory's basename or
SYN_EMBEDDING_HF_NAME), SYN_EMBEDDING_STORE (where collections live:
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
from dataclasses import dataclass, field

import numpy as np
import torch
from synesthesia.tensors import to_tensor
from synesthesia.v1 import common_pb2, embedding_pb2, embedding_pb2_grpc

from models.repository import AUDIO_TEXT_EMBEDDING, IMAGE_TEXT_EMBEDDING
from services.embedding.explain import EmbeddingExplainer
from services.embedding.settings import EmbeddingSettings
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
    SET_IN_BATCH,
    AudioLimits,
    ClipReader,
    ModelRegistry,
    ServedModel,
    Settings,
    decodes_inline,
    image_from_message,
    in_thread,
    failed_precondition,
    invalid_argument,
    not_found,
    resource_exhausted,
    unavailable,
)

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
    texts: list[str] | None = None
    images: list | None = None  # one prepared input per image (the model's `prepare`)
    clips: list[np.ndarray] | None = None  # mono float32 at the model's sample rate
    # Small images (and field names for errors), decoded into `images` inside the batch.
    raw: list[tuple[common_pb2.Image, str]] | None = field(default=None, repr=False)
    # The model's notes on the images, filled where they are decoded (None: not wanted).
    warnings: list[str] | None = field(default=None, repr=False, metadata=SET_IN_BATCH)

    @property
    def modality(self) -> str:
        return "text" if self.texts is not None else "audio" if self.clips is not None else "image"

    @property
    def inputs(self) -> list:
        return self.texts if self.texts is not None else self.images if self.images is not None else self.clips


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServicer):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        own = EmbeddingSettings.from_env()
        self.models = ModelRegistry(settings, "embedding", (IMAGE_TEXT_EMBEDDING, AUDIO_TEXT_EMBEDDING),
                                    self._embed_batch, shorthands={"EMBEDDING_HF_DIR": IMAGE_TEXT_EMBEDDING})
        self.clips = ClipReader(AudioLimits(own.max_audio_seconds, own.max_audio_sample_rate_hz,
                                            own.max_audio_channels, own.max_audio_decoded_samples),
                                setting_prefix="SYN_EMBEDDING_MAX_AUDIO_")
        self.device = self.models.device
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
        self.store: CollectionStore | None = None
        self.explainer = EmbeddingExplainer(self)  # ExplainMatch, ItemNeighbors, MapCollection (explain.py)

    # --- lifecycle --------------------------------------------------------------------------

    def _open_store(self) -> None:
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

    async def warm_up(self) -> None:
        await self.models.warm_up()
        if not self.models.names():
            raise SystemExit("no embedding model: add an entry to the model repository, or set "
                             "SYN_EMBEDDING_MODELS and/or SYN_EMBEDDING_HF_DIR")
        await asyncio.to_thread(self._open_store)

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
        await self.models.close()
        await self.explainer.close()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)

    # --- device work (batcher thread) -------------------------------------------------------

    def _embed_batch(self, served: ServedModel, jobs: list[EmbedJob]) -> list[np.ndarray | Exception]:
        """One forward pass per modality over the batch's jobs (in chunks of FORWARD_CHUNK items)."""
        model = served.model
        results: list[np.ndarray | Exception] = [None] * len(jobs)  # type: ignore[list-item]
        # Small images are decoded here: that saves each call a hop to a decoding thread and back.
        raw = [i for i, job in enumerate(jobs) if job.raw is not None and job.images is None]
        for i, failure in zip(raw, self._prepare(served, [jobs[i] for i in raw])):
            results[i] = failure
        for modality, embed in (("text", model.embed_texts), ("image", getattr(model, "embed_images", None)),
                                ("audio", getattr(model, "embed_audio", None))):
            indices = [i for i, job in enumerate(jobs) if job.modality == modality and results[i] is None]
            if not indices:
                continue
            try:
                inputs = [x for i in indices for x in jobs[i].inputs]
                vectors = torch.cat([embed(inputs[s:s + FORWARD_CHUNK])
                                     for s in range(0, len(inputs), FORWARD_CHUNK)]).float().cpu().numpy()
                start = 0
                for i in indices:
                    count = len(jobs[i].inputs)
                    results[i] = vectors[start:start + count]
                    start += count
            except Exception as exc:  # delivered to this modality's callers only
                for i in indices:
                    results[i] = exc
        return results

    # --- helpers ----------------------------------------------------------------------------

    def _check_loaded(self) -> None:
        self.models.check_loaded()
        if self.store is None:
            raise unavailable("the embedding index is still loading; retry shortly")

    def _model(self, requested: str, field_name: str = "model", task: str | None = None) -> ServedModel:
        return self.models.get(requested, field_name, task)

    @staticmethod
    def _check_modality(served: ServedModel, modality: str, field_name: str) -> None:
        """Refuse an input the model cannot embed (an image for CLAP, audio for CLIP)."""
        method = {"image": "embed_images", "audio": "embed_audio"}.get(modality)
        if method and not hasattr(served.model, method):
            reads = "audio and text" if served.task == AUDIO_TEXT_EMBEDDING else "images and text"
            raise invalid_argument(field_name, f"model {served.name!r} ({served.task}) embeds {reads}, not "
                                               f"{'images' if modality == 'image' else 'audio'}")

    async def _embed_audio(self, served: ServedModel, clips: list[tuple[common_pb2.AudioClip, str]]) -> np.ndarray:
        """Read, check and resample clips to the model's rate (worker thread), then embed them."""
        read = [await self.clips.read(audio, name) for audio, name in clips]
        rate = served.model.sample_rate

        def resample() -> list[np.ndarray]:
            from models.audio import decoding

            out = []
            for clip in read:
                if clip.sample_rate == rate:
                    out.append(clip.samples)
                    continue
                if not decoding.can_resample(clip.sample_rate, rate):
                    raise invalid_argument(clip.field, f"cannot resample {clip.sample_rate} Hz to the model's {rate} Hz")
                out.append(decoding.resample(torch.from_numpy(clip.samples), clip.sample_rate, rate).numpy())
            return out

        return await served.submit(EmbedJob(clips=await asyncio.to_thread(resample)))

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

    def _prepare(self, served: ServedModel, jobs: list[EmbedJob]) -> list[Exception | None]:
        """Decode each job's images (`raw`, with field names for errors) into `images`, the model's notes
        on them into the job's `warnings` (prefixed with the field when a job has several; only for jobs
        that want them), decided for all the jobs' images together (the built-ins' out-of-world check
        is cheaper per picture over a batch). A bad image fails its own job only (its exception, in job
        order)."""
        failures: list[Exception | None] = [None] * len(jobs)
        decoded = []
        for i, job in enumerate(jobs):
            try:
                decoded.append((i, [image_from_message(data, name, self.settings, FIT_FOR_MODELS_PX)
                                    for data, name in job.raw]))
            except Exception as exc:  # noqa: BLE001 - delivered to this caller
                failures[i] = exc
        notes = iter(served.input_warnings_each(
            [image for i, images in decoded if jobs[i].warnings is not None for image in images]))
        for i, images in decoded:
            job = jobs[i]
            found = [next(notes) for _ in images] if job.warnings is not None else []
            try:
                for (_, name), note in zip(job.raw, found):
                    if isinstance(note, Exception):
                        raise note
                    job.warnings.extend(f"{name}: {w}" if len(job.raw) > 1 else w for w in note)
                job.images = [served.model.prepare(image) for image in images]
            except Exception as exc:  # noqa: BLE001 - delivered to this caller
                failures[i] = exc
        return failures

    @staticmethod
    async def _embed_texts(served: ServedModel, texts: list[str]) -> np.ndarray:
        return await served.submit(EmbedJob(texts=texts))

    async def _embed_images(self, served: ServedModel, datas: list[tuple[common_pb2.Image, str]],
                            warnings: list[str] | None = None) -> np.ndarray:
        job = EmbedJob(raw=datas, warnings=warnings)
        if not decodes_inline([image for image, _ in datas]):
            # Big files would hold up their whole batch while they decode: decode them in a thread first.
            (failure,) = await in_thread("decoding the images", self._prepare, served, [job])
            if failure is not None:
                raise failure
        return await served.submit(job)

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

    def _backend_for(self, info: CollectionInfo, field_name: str = "collection") -> ServedModel:
        """The loaded model that made the collection's vectors, or FAILED_PRECONDITION."""
        served = self.models.models.get(info.model)
        if served is None:
            raise failed_precondition(field_name, f"collection {info.name!r} holds embeddings of model "
                                                  f"{info.model!r}, which this server has not loaded "
                                                  f"(loaded: {', '.join(self.models.names())})")
        dimension, fingerprint = served.model.dimension, served.details.fingerprint
        if dimension != info.dimension:
            raise failed_precondition(field_name, f"collection {info.name!r} holds {info.dimension}-dimensional "
                                                  f"embeddings; model {info.model!r} now gives {dimension}")
        if fingerprint != info.fingerprint:
            raise failed_precondition(field_name, f"collection {info.name!r} was built with other weights of "
                                                  f"model {info.model!r} (fingerprint {info.fingerprint[:12]}, "
                                                  f"loaded {fingerprint[:12]}); re-index it")
        return served

    # --- RPCs: embeddings -------------------------------------------------------------------

    async def EmbedTexts(self, request, context):
        self._check_loaded()
        served = self._model(request.model)
        self._check_count(len(request.texts), "texts", "texts")
        texts = [self._check_text(t, f"texts[{i}]") for i, t in enumerate(request.texts)]
        vectors = await self._embed_texts(served, texts)
        return embedding_pb2.EmbedTextsResponse(embeddings=to_tensor(vectors), model=served.name)

    async def EmbedImages(self, request, context):
        self._check_loaded()
        served = self._model(request.model, task=IMAGE_TEXT_EMBEDDING)
        self._check_count(len(request.images), "images", "images")
        warnings: list[str] = []
        vectors = await self._embed_images(served, [(im, f"images[{i}]") for i, im in enumerate(request.images)],
                                           warnings)
        return embedding_pb2.EmbedImagesResponse(embeddings=to_tensor(vectors), model=served.name, warnings=warnings)

    async def EmbedAudio(self, request, context):
        self._check_loaded()
        served = self._model(request.model, task=AUDIO_TEXT_EMBEDDING)
        self._check_count(len(request.audio), "audio", "clips")
        vectors = await self._embed_audio(served, [(clip, f"audio[{i}]") for i, clip in enumerate(request.audio)])
        return embedding_pb2.EmbedAudioResponse(embeddings=to_tensor(vectors), model=served.name)

    async def ListModels(self, request, context):
        self._check_loaded()
        return embedding_pb2.ListEmbeddingModelsResponse(models=self.models.infos())

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
                raise invalid_argument(f"items[{i}].content", "set one of image, text or audio")
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
            served = self._backend_for(existing)
        else:
            served = self._model(request.model)
        name = served.name

        rows = {kind: [i for i, item in enumerate(request.items) if item.WhichOneof("content") == kind]
                for kind in ("text", "image", "audio")}
        for kind in ("image", "audio"):
            if rows[kind]:
                self._check_modality(served, kind, f"items[{rows[kind][0]}].{kind}")
        vectors = np.zeros((len(request.items), served.model.dimension), dtype=np.float32)
        work = {}
        if rows["text"]:
            work["text"] = self._embed_texts(served, [request.items[i].text for i in rows["text"]])
        if rows["image"]:
            work["image"] = self._embed_images(served, [(request.items[i].image, f"items[{i}].image")
                                                        for i in rows["image"]])
        if rows["audio"]:
            work["audio"] = self._embed_audio(served, [(request.items[i].audio, f"items[{i}].audio")
                                                       for i in rows["audio"]])
        for kind, block in zip(work, await asyncio.gather(*work.values())):
            vectors[rows[kind]] = block

        collection = existing or await self._store(
            self.store.create, request.collection, name, served.details.fingerprint, served.model.dimension)
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
            raise invalid_argument("query", "set one of text, image or audio")
        if request.model and request.model != collection.model:
            raise failed_precondition("model", f"collection {collection.name!r} holds embeddings of model "
                                               f"{collection.model!r}, not {echo(request.model)}")
        served = self._backend_for(collection)
        unknown: list[str] = []
        warnings: list[str] = []
        if query == "text":
            text = self._check_text(request.text, "text")
            unknown = served.model.unknown_words(text)
            vector = (await self._embed_texts(served, [text]))[0]
        elif query == "image":
            self._check_modality(served, "image", "image")
            vector = (await self._embed_images(served, [(request.image, "image")], warnings))[0]
        else:
            self._check_modality(served, "audio", "audio")
            vector = (await self._embed_audio(served, [(request.audio, "audio")]))[0]
        hits = await self._store(self.store.search, collection.name, vector, request.top_k, where)
        return embedding_pb2.SearchResponse(hits=[
            embedding_pb2.SearchHit(id=h.id, score=h.score, metadata=h.metadata) for h in hits], unknown_words=unknown,
            warnings=warnings)

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
