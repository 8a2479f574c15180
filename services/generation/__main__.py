"""python -m services.generation --port N: the Generation service on the shared runtime."""

from services.generation.servicer import GenerationServicer
from services.runtime import run_service
from synesthesia.v1 import generation_pb2_grpc

run_service("generation", GenerationServicer, generation_pb2_grpc.add_GenerationServicer_to_server,
            "synesthesia.v1.Generation")
