"""python -m services.audio --port N: the Audio service (features and sound-source localisation)."""

from services.audio.servicer import AudioServicer
from services.runtime import run_service
from synesthesia.v1 import audio_pb2_grpc

run_service("audio", AudioServicer, audio_pb2_grpc.add_AudioServicer_to_server, "synesthesia.v1.Audio")
