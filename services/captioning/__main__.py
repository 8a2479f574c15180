"""python -m services.captioning --port N: the Captioning service (Show, Attend and Tell; optionally a
transformers VisionEncoderDecoderModel)."""

from services.captioning.servicer import CaptioningServicer
from services.runtime import run_service
from synesthesia.v1 import captioning_pb2_grpc

run_service("captioning", CaptioningServicer, captioning_pb2_grpc.add_CaptioningServicer_to_server,
            "synesthesia.v1.Captioning")
