"""python -m services.gateway --port N: the Gateway service (chains captioning, generation, audio, embedding).

It also forwards the upstreams' own services, so a stack that publishes only this port is fully usable.
"""

from services.gateway.servicer import GatewayServicer
from services.runtime import run_service

run_service("gateway", GatewayServicer, GatewayServicer.add_to_server, "synesthesia.v1.Gateway")
