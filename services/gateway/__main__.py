"""python -m services.gateway --port N: the Gateway service (chains captioning, generation, audio, embedding).

It also forwards the upstreams' own services, so a stack that publishes only this port is fully usable.
With SYN_HTTP_PORT set it serves all of them as HTTP/JSON too, with /openapi.json and the playground.
With SYN_GATEWAY_FRONT_PORT set it starts an nginx front that sends forwarded calls straight upstream.
"""

from services.gateway.front import nginx_front
from services.gateway.http import http_frontend
from services.gateway.servicer import GatewayServicer
from services.runtime import run_service

run_service("gateway", GatewayServicer, GatewayServicer.add_to_server, "synesthesia.v1.Gateway",
            frontends=[http_frontend, nginx_front])
