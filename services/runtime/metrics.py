"""Prometheus metrics shared by every service (served on SYN_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RPCS = Counter("syn_rpcs_total", "RPCs finished, by method and status code", ["method", "code"])
RPC_SECONDS = Histogram(
    "syn_rpc_seconds",
    "RPC latency in seconds, by method",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IN_FLIGHT = Gauge("syn_rpcs_in_flight", "RPCs being served now")
BATCH_SIZE = Histogram(
    "syn_batch_size", "Items per model call, by batcher", ["batcher"], buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)
BATCH_SECONDS = Histogram("syn_batch_seconds", "Model call time per batch, by batcher", ["batcher"])


def serve_metrics(port: int) -> None:
    if port:
        start_http_server(port)
