"""The whole stack with TLS, mutual TLS and a token on, started by `make up`'s code, used through the
gateway (the client library) and the `syn` CLI, with every refusal; one request id found in every
service's JSON request log; one OpenTelemetry trace spanning gateway -> captioning and embedding.

Certificates are generated here (scripts/dev_pki.py); nothing secret is committed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from models.shapesworld import EVAL_SEEDS, render_scene
from synesthesia.channels import ChannelSecurity
from synesthesia.client import Client
from synesthesia.pictures import png_bytes
from synesthesia.v1 import embedding_pb2, embedding_pb2_grpc, gateway_pb2, gateway_pb2_grpc
from scripts.dev_pki import Pki, make_pki
from tests.servers import REPO_ROOT, free_port_offset

pytestmark = pytest.mark.slow
TOKEN = "s3cret-token"
PORTS = {"gateway": 50050, "captioning": 50051, "generation": 50052, "audio": 50053, "embedding": 50054}
METRICS = {"gateway": 9100, "captioning": 9101, "generation": 9102, "audio": 9103, "embedding": 9104}


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver that keeps every exported span in memory."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, object]] = []  # (service.name, Span)

    def Export(self, request, context):
        for resource_spans in request.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name"), "")
            for scope in resource_spans.scope_spans:
                self.spans.extend((service, span) for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@dataclass
class SecureStack:
    pki: Pki
    offset: int
    run_dir: Path
    env: dict
    collector: Collector

    def target(self, name: str) -> str:
        return f"127.0.0.1:{PORTS[name] + self.offset}"

    def metrics_url(self, name: str) -> str:
        return f"http://127.0.0.1:{METRICS[name] + self.offset}/metrics"

    def good(self, **changes) -> ChannelSecurity:
        values = dict(ca_file=str(self.pki.ca), cert_file=str(self.pki.client_cert),
                      key_file=str(self.pki.client_key), token=TOKEN) | changes
        return ChannelSecurity(**values)

    def log_lines(self, name: str) -> list[dict]:
        lines = []
        for line in (self.run_dir / "logs" / f"{name}.log").read_text(errors="replace").splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines


def stack_command(action: str, stack_env: dict, run_dir: Path, offset: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.stack", action, "--run-dir", str(run_dir),
                           "--port-offset", str(offset)], cwd=REPO_ROOT, env=stack_env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def secure_stack(tmp_path_factory):
    missing = [n for n in PORTS if not (REPO_ROOT / "services" / n / "servicer.py").exists()]
    if missing:
        pytest.skip(f"services not in this checkout yet: {missing}")
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    collector = Collector()
    receiver = grpc.server(futures.ThreadPoolExecutor(4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, receiver)
    otlp_port = receiver.add_insecure_port("127.0.0.1:0")
    receiver.start()
    run_dir = tmp_path_factory.mktemp("secure-stack")
    offset = free_port_offset()  # clear of a running `make up`, and of the ephemeral range
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYN_", "OTEL_"))} | {
        # Every server: TLS, client certificates from the test CA, a bearer token.
        "SYN_TLS_CERT_FILE": str(pki.server_cert), "SYN_TLS_KEY_FILE": str(pki.server_key),
        "SYN_TLS_CLIENT_CA_FILE": str(pki.ca), "SYN_AUTH_TOKEN": TOKEN,
        # Every caller (the gateway to its upstreams, make up's readiness checks): the CA and a client cert.
        "SYN_CLIENT_CA_FILE": str(pki.ca), "SYN_CLIENT_CERT_FILE": str(pki.client_cert),
        "SYN_CLIENT_KEY_FILE": str(pki.client_key),
        "SYN_LOG_FORMAT": "json", "SYN_TORCH_THREADS": "1", "SYN_GATEWAY_HEALTH_INTERVAL_S": "0.5",
        "SYN_EMBEDDING_INDEX_DIR": str(run_dir / "index"),
        "SYN_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}", "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    up = stack_command("up", env, run_dir, offset)
    stack = SecureStack(pki, offset, run_dir, env, collector)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield stack
    finally:
        stack_command("down", env, run_dir, offset)
        receiver.stop(0)


@pytest.fixture(scope="module")
def scenes():
    return [render_scene(EVAL_SEEDS[i], objects=1, domain="day") for i in range(8)]


@pytest.fixture(scope="module")
def indexed(secure_stack, scenes):
    with Client(secure_stack.target("gateway"), embedding=secure_stack.target("embedding"),
                security=secure_stack.good()) as client:
        client.upsert([embedding_pb2.Item(id=str(s.seed), image={"data": png_bytes(s.image)}) for s in scenes],
                      collection="secure")
    return "secure"


def describe(stack: SecureStack, security: ChannelSecurity, image: bytes, metadata=None, collection: str = ""):
    with security.channel(stack.target("gateway")) as channel:
        return gateway_pb2_grpc.GatewayStub(channel).Describe(
            gateway_pb2.DescribeRequest(image={"data": image}, collection=collection, top_k=3),
            metadata=security.metadata() + tuple(metadata or ()), timeout=120)


def test_describe_through_the_gateway_with_tls_mtls_and_token(secure_stack, scenes, indexed):
    with Client(secure_stack.target("gateway"), security=secure_stack.good()) as client:
        reply = client.describe(png_bytes(scenes[2].image), collection=indexed, top_k=3)
    obj = scenes[2].objects[0]
    assert obj.colour in reply.caption.caption and obj.shape in reply.caption.caption
    assert reply.neighbours[0].id == str(scenes[2].seed)


@pytest.mark.parametrize("case", ["no token", "wrong token", "no client certificate", "wrong CA",
                                  "client certificate from another CA", "plaintext"])
def test_each_refusal(secure_stack, scenes, case):
    stack, pki = secure_stack, secure_stack.pki
    security = {
        "no token": stack.good(token=""),
        "wrong token": stack.good(token="not-the-token"),
        "no client certificate": stack.good(cert_file="", key_file=""),
        "wrong CA": stack.good(ca_file=str(pki.other_ca)),
        "client certificate from another CA": stack.good(cert_file=str(pki.other_client_cert),
                                                         key_file=str(pki.other_client_key)),
        "plaintext": ChannelSecurity(token=TOKEN),
    }[case]
    expected = grpc.StatusCode.UNAUTHENTICATED if "token" in case else grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as err:  # the published endpoint
        describe(stack, security, png_bytes(scenes[0].image))
    assert err.value.code() == expected, err.value
    with pytest.raises(grpc.RpcError) as err:  # an internal service alike
        with Client(stack.target("gateway"), embedding=stack.target("embedding"), security=security) as client:
            client.search("a red circle", collection="secure")
    assert err.value.code() == expected, err.value


def syn(stack: SecureStack, *args: str, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SYN_")}
    return subprocess.run([sys.executable, "-m", "synesthesia.cli", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300, env=base | {
                              "SYN_TARGET": stack.target("gateway"),
                              **{f"SYN_{n.upper()}_TARGET": stack.target(n) for n in PORTS if n != "gateway"},
                              **env})


def test_the_cli_with_flags_and_its_refusals(secure_stack, scenes, tmp_path):
    pki = secure_stack.pki
    image = tmp_path / "scene.png"
    image.write_bytes(png_bytes(scenes[4].image))
    flags = ["--ca", str(pki.ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key)]
    ok = syn(secure_stack, *flags, "--token", TOKEN, "--json", "--out", str(tmp_path), "caption", str(image))
    assert ok.returncode == 0, ok.stderr
    assert scenes[4].objects[0].shape in json.loads(ok.stdout)["caption"]
    # The upstreams' health comes from the gateway's CheckUpstreams, which names internal targets: token needed.
    health = syn(secure_stack, *flags, "--token", TOKEN, "--json", "health")
    assert health.returncode == 0, health.stderr
    assert {v["status"] for v in json.loads(health.stdout).values()} == {"SERVING"}
    # The same from the environment.
    from_env = syn(secure_stack, "--json", "--out", str(tmp_path), "caption", str(image), SYN_TOKEN=TOKEN,
                   SYN_CLIENT_CA_FILE=str(pki.ca), SYN_CLIENT_CERT_FILE=str(pki.client_cert),
                   SYN_CLIENT_KEY_FILE=str(pki.client_key))
    assert from_env.returncode == 0, from_env.stderr
    no_token = syn(secure_stack, *flags, "caption", str(image))
    assert no_token.returncode == 9 and "UNAUTHENTICATED" in no_token.stderr, no_token.stderr
    wrong_token = syn(secure_stack, *flags, "--token", "nope", "caption", str(image))
    assert wrong_token.returncode == 9, wrong_token.stderr
    no_cert = syn(secure_stack, "--ca", str(pki.ca), "--token", TOKEN, "caption", str(image))
    assert no_cert.returncode == 5 and "UNAVAILABLE" in no_cert.stderr, no_cert.stderr
    wrong_ca = syn(secure_stack, "--ca", str(pki.other_ca), "--cert", str(pki.client_cert), "--key",
                   str(pki.client_key), "--token", TOKEN, "caption", str(image))
    assert wrong_ca.returncode == 5, wrong_ca.stderr
    half = syn(secure_stack, "--ca", str(pki.ca), "--cert", str(pki.client_cert), "caption", str(image))
    assert half.returncode == 2 and "--key" in half.stderr, half.stderr


def test_the_gateway_sends_its_own_token_upstream_not_the_callers(secure_stack, scenes, tmp_path):
    """A second gateway whose callers use a public token and whose upstreams get the internal one."""
    from tests.servers import ServiceProcess

    stack = secure_stack
    env = dict(stack.env) | {"SYN_AUTH_TOKEN": "public-token", "SYN_GATEWAY_UPSTREAM_TOKEN": TOKEN,
                             "SYN_OTLP_ENDPOINT": ""} | {
        f"SYN_{n.upper()}_TARGET": stack.target(n) for n in PORTS if n != "gateway"}
    env = {k: v for k, v in env.items() if k.startswith("SYN_")}
    gateway = ServiceProcess("services.gateway", env, tmp_path, security=stack.good(token="")).start()
    try:
        public = stack.good(token="public-token")
        with public.channel(gateway.target) as channel:
            reply = gateway_pb2_grpc.GatewayStub(channel).Describe(
                gateway_pb2.DescribeRequest(image={"data": png_bytes(scenes[1].image)}),
                metadata=public.metadata(), timeout=120)
        assert scenes[1].objects[0].shape in reply.caption.caption
        # The public token alone opens nothing inside: upstreams want the internal one.
        with pytest.raises(grpc.RpcError) as err:
            Client(stack.target("gateway"), embedding=stack.target("embedding"),
                   security=public).search("a red circle", collection="secure")
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        gateway.stop()


def test_the_front_holds_tls_mtls_and_both_tokens_as_the_gateway_does(secure_stack, scenes, indexed, tmp_path):
    """The gateway's nginx front (SYN_GATEWAY_FRONT_PORT): mutual TLS on both sides, the caller's public
    token checked and swapped for the internal one, the request id carried to the upstream's log."""
    from tests.servers import ServiceProcess, free_port

    stack = secure_stack
    front = free_port()
    env = dict(stack.env) | {"SYN_AUTH_TOKEN": "public-token", "SYN_GATEWAY_UPSTREAM_TOKEN": TOKEN,
                             "SYN_OTLP_ENDPOINT": "", "SYN_GATEWAY_FRONT_PORT": str(front),
                             # nginx checks certificates by name only: the name in the test server certificate.
                             "SYN_CLIENT_SERVER_NAME": "localhost"} | {
        f"SYN_{n.upper()}_TARGET": stack.target(n) for n in PORTS if n != "gateway"}
    env = {k: v for k, v in env.items() if k.startswith("SYN_")}
    gateway = ServiceProcess("services.gateway", env, tmp_path, security=stack.good(token="")).start()
    target = f"127.0.0.1:{front}"
    search = embedding_pb2.SearchRequest(collection=indexed, text="a red circle", top_k=2)
    try:
        public = stack.good(token="public-token")
        request_id = f"front-{time.time_ns()}"
        with public.channel(target) as channel:
            hits = embedding_pb2_grpc.EmbeddingStub(channel).Search(
                search, metadata=public.metadata() + (("x-request-id", request_id),), timeout=60).hits
            assert hits  # forwarded by nginx: the upstream took the internal token over mutual TLS
            reply = gateway_pb2_grpc.GatewayStub(channel).Describe(  # not forwarded: the Python gateway
                gateway_pb2.DescribeRequest(image={"data": png_bytes(scenes[1].image)}),
                metadata=public.metadata(), timeout=120)
        assert scenes[1].objects[0].shape in reply.caption.caption
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not [
                line for line in stack.log_lines("embedding") if line.get("request_id") == request_id]:
            time.sleep(0.3)
        (line,) = [line for line in stack.log_lines("embedding") if line.get("request_id") == request_id]
        assert line["method"] == "/synesthesia.v1.Embedding/Search" and line["status"] == "OK"
        refusals = {
            "no token": (public.with_token(""), grpc.StatusCode.UNAUTHENTICATED),
            "the internal token": (public.with_token(TOKEN), grpc.StatusCode.UNAUTHENTICATED),
            "the token in another case": (public.with_token("PUBLIC-TOKEN"), grpc.StatusCode.UNAUTHENTICATED),
            # The handshake ends and nginx answers: UNAUTHENTICATED naming the setting, not UNAVAILABLE.
            "no client certificate": (stack.good(token="public-token", cert_file="", key_file=""),
                                      grpc.StatusCode.UNAUTHENTICATED),
            "client certificate from another CA": (stack.good(token="public-token",
                                                              cert_file=str(stack.pki.other_client_cert),
                                                              key_file=str(stack.pki.other_client_key)),
                                                   grpc.StatusCode.UNAUTHENTICATED),
            "wrong CA": (stack.good(token="public-token", ca_file=str(stack.pki.other_ca)),
                         grpc.StatusCode.UNAVAILABLE),
            "plaintext": (ChannelSecurity(token="public-token"), grpc.StatusCode.UNAVAILABLE),
        }
        for case, (security, code) in refusals.items():
            with security.channel(target) as channel, pytest.raises(grpc.RpcError) as err:
                embedding_pb2_grpc.EmbeddingStub(channel).Search(search, metadata=security.metadata(), timeout=30)
            assert err.value.code() == code, (case, err.value)
            if code == grpc.StatusCode.UNAUTHENTICATED:
                named = "SYN_TLS_CLIENT_CA_FILE" if "certificate" in case else "bearer token"
                assert named in err.value.details(), case
        # The scheme's case is free, as in the gateway.
        with public.channel(target) as channel:
            assert embedding_pb2_grpc.EmbeddingStub(channel).Search(
                search, metadata=(("authorization", "bearer public-token"),), timeout=60).hits
    finally:
        gateway.stop()


def test_one_request_id_finds_the_call_in_every_service_log(secure_stack, scenes, indexed):
    request_id = f"secure-{time.time_ns()}"
    describe(secure_stack, secure_stack.good(), png_bytes(scenes[3].image), (("x-request-id", request_id),),
             collection=indexed)
    found = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(found) < 3:
        for name in ("gateway", "captioning", "embedding"):
            lines = [line for line in secure_stack.log_lines(name) if line.get("request_id") == request_id
                     and line.get("logger") == "synesthesia.access"]
            if lines:
                found[name] = lines
        time.sleep(0.5)
    assert set(found) == {"gateway", "captioning", "embedding"}, found
    (gateway_line,) = found["gateway"]
    assert gateway_line["method"] == "/synesthesia.v1.Gateway/Describe" and gateway_line["status"] == "OK"
    assert gateway_line["peer"].startswith("ipv4:127.0.0.1:") and gateway_line["latency_ms"] > 0
    (caption_line,) = found["captioning"]
    assert caption_line["method"] == "/synesthesia.v1.Captioning/Caption"
    assert caption_line["model"] and caption_line["batch_size"] >= 1
    assert {line["method"] for line in found["embedding"]} == {"/synesthesia.v1.Embedding/Search"}


def test_one_trace_spans_gateway_captioning_and_embedding(secure_stack, scenes, indexed):
    collector = secure_stack.collector
    before = len(collector.spans)
    describe(secure_stack, secure_stack.good(), png_bytes(scenes[5].image), collection=indexed)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        spans = collector.spans[before:]
        roots = [s for service, s in spans if service == "synesthesia-gateway" and s.name.endswith("Gateway/Describe")]
        if roots and {svc for svc, s in spans if s.trace_id == roots[0].trace_id} >= {
                "synesthesia-gateway", "synesthesia-captioning", "synesthesia-embedding"}:
            break
        time.sleep(0.3)
    (root,) = roots
    trace = [(service, span) for service, span in collector.spans[before:] if span.trace_id == root.trace_id]
    by_id = {span.span_id: (service, span) for service, span in trace}
    for upstream, method in (("synesthesia-captioning", "Captioning/Caption"),
                             ("synesthesia-embedding", "Embedding/Search")):
        (server_span,) = [s for svc, s in trace if svc == upstream and s.name.endswith(method)]
        # Its parent is the gateway's client span for that call, whose parent is the Describe span.
        parent_service, client_span = by_id[server_span.parent_span_id]
        assert parent_service == "synesthesia-gateway" and client_span.name.endswith(method)
        assert client_span.parent_span_id == root.span_id
    assert not [s for _, s in trace if "Health" in s.name]  # probes are not traced


DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "synesthesia.json"
# Present only on hosts with a GPU (NVML), or only after a caller gave up: declared is enough for these.
MAY_BE_EMPTY = {"syn_gpu_memory_used_bytes", "syn_gpu_memory_total_bytes", "syn_gpu_utilization_ratio",
                "syn_rpcs_cancelled_total"}


def dashboard_metrics() -> set[str]:
    import re

    exprs = [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]
    return {name for expr in exprs for name in re.findall(r"\b(syn_[a-z0-9_]+)\b", expr)}


def exported(url: str) -> tuple[set[str], set[str]]:
    """(sample names with at least one sample, every sample name a declared family can have)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    sampled, declared = set(), set()
    for family in text_string_to_metric_families(urllib.request.urlopen(url, timeout=10).read().decode()):
        sampled |= {sample.name for sample in family.samples}
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ("",))
        declared |= {family.name + suffix for suffix in suffixes}
    return sampled, declared


def test_dashboard_queries_only_metrics_the_services_export(secure_stack, scenes, indexed):
    describe(secure_stack, secure_stack.good(), png_bytes(scenes[6].image), collection=indexed)
    with pytest.raises(grpc.RpcError) as err:  # an upstream error, counted per upstream in the gateway
        describe(secure_stack, secure_stack.good(), png_bytes(scenes[6].image), collection="no-such-collection")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    queried = dashboard_metrics()
    assert {"syn_queue_depth", "syn_queue_wait_seconds_bucket", "syn_upstream_seconds_bucket",
            "syn_upstream_errors_total", "syn_rpcs_cancelled_total", "syn_gpu_memory_used_bytes"} <= queried
    sampled, declared = set(), set()
    for name in METRICS:
        some, every = exported(secure_stack.metrics_url(name))
        sampled |= some
        declared |= every
    missing = {m for m in queried - MAY_BE_EMPTY if m not in sampled}
    assert not missing, f"the dashboard queries metrics no service exports: {sorted(missing)}"
    gpu = {m for m in MAY_BE_EMPTY if m.startswith("syn_gpu_")}
    assert not gpu & sampled or gpu <= sampled  # all GPU figures or none
    assert "syn_rpcs_cancelled_total" in declared
