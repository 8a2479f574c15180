"""Prometheus metrics shared by every service (served on SYN_METRICS_HOST:SYN_METRICS_PORT).

Named and labelled the way Triton and TorchServe operators expect: per method
and per model for calls, per batcher and model for the scheduler (queue depth,
queue wait, batch size, compute time), per upstream in the gateway, and GPU
memory and utilisation from NVML when, and only when, a GPU is present.
deploy/grafana/synesthesia.json charts them; a test checks every metric it
queries exists.
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# "model" is the model that served the call ("" when the call used none: health, the gateway's chains).
RPCS = Counter("syn_rpcs_total", "RPCs finished, by method, status code and model", ["method", "code", "model"])
RPC_SECONDS = Histogram("syn_rpc_seconds", "RPC latency in seconds, by method and model", ["method", "model"],
                        buckets=LATENCY_BUCKETS)
IN_FLIGHT = Gauge("syn_rpcs_in_flight", "RPCs being served now")
CANCELLED = Counter("syn_rpcs_cancelled_total",
                    "RPCs the caller cancelled or let expire (deadline) before they finished, by method", ["method"])

BATCH_SIZE = Histogram("syn_batch_size", "Items per model call, by batcher and model", ["batcher", "model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))
BATCH_SECONDS = Histogram("syn_batch_seconds", "Model call time per batch, by batcher and model",
                          ["batcher", "model"], buckets=LATENCY_BUCKETS)
QUEUE_DEPTH = Gauge("syn_queue_depth", "Items waiting in a batcher's queue", ["batcher"])
QUEUE_WAIT_SECONDS = Histogram("syn_queue_wait_seconds",
                               "Time an item waited between submit and its model call, by batcher and model",
                               ["batcher", "model"], buckets=LATENCY_BUCKETS)

UPSTREAM_SECONDS = Histogram("syn_upstream_seconds", "Gateway calls to upstream services, by upstream and method",
                             ["upstream", "method"], buckets=LATENCY_BUCKETS)
UPSTREAM_ERRORS = Counter("syn_upstream_errors_total", "Failed gateway calls to upstreams, by upstream, method, code",
                          ["upstream", "method", "code"])
UPSTREAM_UP = Gauge("syn_upstream_up", "1 when the gateway's upstream reports SERVING, else 0", ["upstream"])

# Label children per (method, code, model): labels() builds and locks a lookup on every call, and
# every RPC records two of them; the label sets are the same few for the life of a process.
_RPC_CHILDREN: dict[tuple[str, str, str], tuple] = {}


def record_rpc(method: str, code: str, model: str, seconds: float) -> None:
    """Count one finished RPC and observe its latency (syn_rpcs_total, syn_rpc_seconds)."""
    children = _RPC_CHILDREN.get((method, code, model))
    if children is None:
        children = _RPC_CHILDREN[(method, code, model)] = (RPCS.labels(method, code, model),
                                                           RPC_SECONDS.labels(method, model))
    children[0].inc()
    children[1].observe(seconds)


class GpuCollector:
    """GPU memory and utilisation per device from NVML, read at scrape time.

    Registered only when NVML initialises and reports at least one device, so on
    a CPU host the syn_gpu_* metrics are absent rather than zero.
    """

    def __init__(self, pynvml) -> None:
        self._nvml = pynvml
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]

    def collect(self):
        used = GaugeMetricFamily("syn_gpu_memory_used_bytes", "GPU memory in use (NVML), by GPU index", labels=["gpu"])
        total = GaugeMetricFamily("syn_gpu_memory_total_bytes", "GPU memory in total (NVML), by GPU index",
                                  labels=["gpu"])
        busy = GaugeMetricFamily("syn_gpu_utilization_ratio",
                                 "Share of the last sample period a kernel ran on the GPU (NVML), 0-1", labels=["gpu"])
        for index, handle in enumerate(self._handles):
            try:
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                rates = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            except self._nvml.NVMLError as exc:  # a GPU fell off the bus: report the others
                log.warning("NVML read of GPU %d failed: %s", index, exc)
                continue
            used.add_metric([str(index)], float(memory.used))
            total.add_metric([str(index)], float(memory.total))
            busy.add_metric([str(index)], rates.gpu / 100.0)
        yield from (used, total, busy)


_gpu_collector: GpuCollector | None = None


def gpu_collector(registry=REGISTRY) -> GpuCollector | None:
    """Register the NVML collector once, when a GPU is present; None on CPU-only hosts."""
    global _gpu_collector
    if _gpu_collector is not None:
        return _gpu_collector
    try:
        import pynvml

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() < 1:
            return None
        collector = GpuCollector(pynvml)
    except Exception as exc:  # noqa: BLE001 - no driver, no library, no device: no GPU metrics
        log.debug("no GPU metrics: %s", exc)
        return None
    registry.register(collector)
    _gpu_collector = collector
    return collector


def serve_metrics(port: int, host: str) -> None:
    """Start the /metrics exporter on host:port (nothing when port is 0)."""
    if port:
        gpu_collector()
        start_http_server(port, addr=host)
