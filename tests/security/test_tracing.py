"""Tracing with OpenTelemetry's in-memory exporter: a caller's W3C context crosses both hops, probes are not traced.

The whole stack's trace (gateway -> captioning and embedding, over OTLP) is in test_secure_stack.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.servers import REPO_ROOT


def test_the_callers_trace_continues_through_server_client_server():
    result = subprocess.run([sys.executable, "-m", "tests.security.trace_chain"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    spans = json.loads(result.stdout.strip().splitlines()[-1])
    assert {s["trace_id"] for s in spans} == {"0af7651916cd43dd8448eb211c80319c"}
    front, = [s for s in spans if s["kind"] == "SERVER" and s["parent_id"] == "b7ad6b7169203331"]
    client, = [s for s in spans if s["kind"] == "CLIENT"]
    back, = [s for s in spans if s["kind"] == "SERVER" and s is not front]
    assert client["parent_id"] == front["span_id"] and back["parent_id"] == client["span_id"]
    assert all("Health" not in s["name"] for s in spans)  # the health check made no span
    assert len(spans) == 3


def test_tracing_is_off_by_default():
    code = ("from services.runtime import Settings, tracing; "
            "s = Settings(); tracing.setup('x', s.otlp_endpoint, s.trace_sample_ratio); "
            "print(tracing.enabled(), tracing.server_interceptors(), tracing.client_interceptors())")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "[]", "None"], result.stderr
