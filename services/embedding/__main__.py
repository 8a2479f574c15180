"""python -m services.embedding --port N: the Embedding service (joint image-text space, persistent collections)."""

from services.embedding.servicer import EmbeddingServicer
from services.runtime import run_service
from synesthesia.v1 import embedding_pb2_grpc

run_service("embedding", EmbeddingServicer, embedding_pb2_grpc.add_EmbeddingServicer_to_server,
            "synesthesia.v1.Embedding")
