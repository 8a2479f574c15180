"""Loaded by every process of the benchmark's Ray cluster (the launcher puts this folder first on
PYTHONPATH): Ray Serve binds its gRPC proxy to every interface ("[::]:PORT", not configurable);
the benchmark keeps all servers on loopback, so any wildcard gRPC bind becomes 127.0.0.1."""

try:
    from grpc.aio import _server

    _add = _server.Server.add_insecure_port

    def _loopback_only(self, address: str) -> int:
        for wildcard in ("[::]:", "0.0.0.0:"):
            if address.startswith(wildcard):
                address = "127.0.0.1:" + address[len(wildcard):]
        return _add(self, address)

    _server.Server.add_insecure_port = _loopback_only
except Exception:  # noqa: BLE001 - a process without grpc binds nothing
    pass
