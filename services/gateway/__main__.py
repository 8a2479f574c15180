"""python -m services.gateway --port N: the Gateway service (chains captioning, generation, audio, embedding)."""

from services.gateway.servicer import GatewayServicer
from services.runtime import run_service
from synesthesia.v1 import gateway_pb2_grpc

run_service("gateway", GatewayServicer, gateway_pb2_grpc.add_GatewayServicer_to_server, "synesthesia.v1.Gateway")
