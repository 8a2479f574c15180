"""Gateway.Explain: one RPC for every explanation, routed to the service that owns the model.

The gradients live where the weights are, so the gateway only picks the upstream and method from the
request's `target` and hands the owning service's response back in the matching `result` field.
"""

from __future__ import annotations

from services.gateway.upstreams import Upstream, call
from services.runtime import invalid_argument
from synesthesia.v1 import explain_pb2

# request/response field -> (upstream, method)
ROUTES = {
    "caption": ("captioning", "ExplainCaption"),
    "judge": ("captioning", "ExplainJudge"),
    "visualize_judge": ("captioning", "VisualizeJudge"),
    "match": ("embedding", "ExplainMatch"),
    "neighbors": ("embedding", "ItemNeighbors"),
    "map_collection": ("embedding", "MapCollection"),
    "localization": ("audio", "ExplainLocalization"),
}


async def explain(upstreams: dict[str, Upstream], request: explain_pb2.ExplainRequest,
                  context) -> explain_pb2.ExplainResponse:
    which = request.WhichOneof("target")
    if which is None:
        raise invalid_argument("target", f"set one of: {', '.join(ROUTES)}")
    service, method = ROUTES[which]
    answer = await call(upstreams[service], method, getattr(request, which), context)
    response = explain_pb2.ExplainResponse()
    getattr(response, which).CopyFrom(answer)
    return response
