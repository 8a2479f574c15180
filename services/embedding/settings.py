"""SYN_EMBEDDING_*: the embedding service's own settings, typed and checked once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.embedding.store import INDEX_KINDS
from services.runtime import read_settings


@dataclass(frozen=True)
class EmbeddingSettings:
    # Model-repository entries served (comma-separated); unset = every embedding entry (docs/models.md).
    models: tuple[str, ...] = ()
    # Longest clip EmbedAudio, audio items and audio queries accept (audio-text models), seconds.
    max_audio_seconds: float = field(default=30.0, metadata={"min": 0.001})
    # Encoded audio, checked from the header before decoding (as the audio service's SYN_AUDIO_MAX_*):
    # highest sample rate, most channels, most samples (frames x channels) one decode may produce.
    max_audio_sample_rate_hz: int = field(default=192_000, metadata={"min": 1})
    max_audio_channels: int = field(default=8, metadata={"min": 1})
    max_audio_decoded_samples: int = field(default=1 << 22, metadata={"min": 1})
    # A local Hugging Face CLIPModel directory served beside them, and its model name.
    hf_dir: str = ""
    hf_name: str = ""
    # FAISS + log store folder (used when `store` is empty).
    index_dir: str = "run/index"
    # Collection store: empty = FAISS + log in index_dir; postgresql://... = PostgreSQL + pgvector.
    store: str = ""
    index_kind: str = field(default="flat-ip", metadata={"choices": INDEX_KINDS})
    # FAISS snapshots: after this many logged changes, or this many seconds.
    snapshot_every: int = field(default=1000, metadata={"min": 1})
    snapshot_interval_s: float = field(default=30.0, metadata={"min": 0.0})
    hnsw_m: int = field(default=32, metadata={"min": 2})
    hnsw_ef_search: int = field(default=64, metadata={"min": 1})
    # PostgreSQL connection pool size and per-statement timeout.
    store_pool_size: int = field(default=8, metadata={"min": 1})
    store_timeout_s: float = field(default=10.0, metadata={"min": 0.001})

    @classmethod
    def from_env(cls) -> "EmbeddingSettings":
        return read_settings(cls, "SYN_EMBEDDING_")
