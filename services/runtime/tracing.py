"""OpenTelemetry tracing through the chain: off unless SYN_OTLP_ENDPOINT names a collector.

When on, every service installs a tracer provider (service.name
`synesthesia-<name>`, parent-based ratio sampling from SYN_TRACE_SAMPLE_RATIO)
exporting over OTLP/gRPC, the gRPC server interceptor continues the caller's
W3C `traceparent`, and the gateway's client interceptors start a child span per
upstream call and send its context on. Health checks and reflection are not
traced (probes would drown the traces). When off, nothing is installed: no
interceptor, no per-call cost.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)
_provider = None


def _untraced():
    from opentelemetry.instrumentation.grpc import filters

    return filters.negate(filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection.")))


def setup(service: str, endpoint: str, sample_ratio: float = 1.0, exporter=None):
    """Install the tracer provider; `exporter` (tests: an in-memory one) replaces OTLP."""
    global _provider
    if _provider is not None:
        return _provider
    if not endpoint and exporter is None:
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(resource=Resource.create({"service.name": f"synesthesia-{service}"}),
                              sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        log.info("tracing to %s (sample ratio %.3g)", endpoint, sample_ratio)
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def enabled() -> bool:
    return _provider is not None


def server_interceptors() -> list:
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=_provider, filter_=_untraced())]


def client_interceptors() -> list | None:
    if _provider is None:
        return None
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return aio_client_interceptors(tracer_provider=_provider, filter_=_untraced())


def current_trace_id() -> str:
    if _provider is None:
        return ""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def shutdown() -> None:
    """Flush spans still queued (drain calls this so the last calls' spans are not lost)."""
    if _provider is not None:
        _provider.shutdown()
