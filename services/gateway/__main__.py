"""python -m services.gateway --port N: the Gateway service (chains captioning, generation, audio, embedding).

It also forwards the upstreams' own services, so a stack that publishes only this port is fully usable.
With SYN_HTTP_PORT set it serves all of them as HTTP/JSON too, with /openapi.json and the playground.
"""

from services.gateway.http import http_frontend
from services.gateway.servicer import GatewayServicer
from services.runtime import run_service

run_service("gateway", GatewayServicer, GatewayServicer.add_to_server, "synesthesia.v1.Gateway",
            frontends=[http_frontend])
