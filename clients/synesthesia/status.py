"""Reading the rich status (google.rpc.Status) a Synesthesia server attaches to an error."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def field_violations(err: grpc.RpcError) -> list[tuple[str, str]]:
    """(field, description) pairs of the google.rpc.BadRequest the server attached, if any."""
    try:
        status = rpc_status.from_call(err)
    except ValueError:  # details that disagree with the status: ignore them
        return []
    out = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out += [(v.field, v.description) for v in bad.field_violations]
    return out
