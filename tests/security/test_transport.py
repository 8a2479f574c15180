"""TLS, mutual TLS, tokens, reflection and exposure settings on one runtime service (the toy captioner)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from synesthesia.channels import ChannelSecurity
from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2
from tests.runtime.helpers import TOY, solid_png
from scripts.dev_pki import make_pki
from tests.servers import REPO_ROOT, ServiceProcess, free_port, health_status

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def toy(tmp_path):
    started: list[ServiceProcess] = []

    def start(env: dict, security: ChannelSecurity | None = None) -> ServiceProcess:
        proc = ServiceProcess(TOY, env, tmp_path, security=security)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


def caption(target: str, security: ChannelSecurity, metadata=None) -> str:
    with security.channel(target) as channel:
        return captioning_pb2_grpc.CaptioningStub(channel).Caption(
            captioning_pb2.CaptionRequest(image=common_pb2.Image(data=solid_png(7))),
            metadata=metadata if metadata is not None else security.metadata(), timeout=60).caption


def refusal(target: str, security: ChannelSecurity, metadata=None) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        caption(target, security, metadata)
    return err.value.code()


def reflection_services(target: str, security: ChannelSecurity, version: str = "v1", metadata=()) -> list[str]:
    """list_services over grpc.reflection.<version> (the messages are the same in v1 and v1alpha)."""
    with security.channel(target) as channel:
        method = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        replies = list(method(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=30,
                              metadata=metadata))
    return [s.name for s in replies[0].list_services_response.service]


def test_tls_server_needs_a_client_that_trusts_its_ca(toy, pki):
    trusted = ChannelSecurity(ca_file=str(pki.ca))
    server = toy({"SYN_TLS_CERT_FILE": str(pki.server_cert), "SYN_TLS_KEY_FILE": str(pki.server_key)}, trusted)
    assert caption(server.target, trusted) == "mean 7 width 16"
    assert refusal(server.target, ChannelSecurity()) == grpc.StatusCode.UNAVAILABLE  # plaintext to a TLS port
    assert refusal(server.target, ChannelSecurity(ca_file=str(pki.other_ca))) == grpc.StatusCode.UNAVAILABLE
    # The server's name is checked: a certificate for localhost/127.0.0.1 is not one for "captioning".
    wrong_name = ChannelSecurity(ca_file=str(pki.ca), server_name="captioning")
    assert refusal(server.target, wrong_name) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_clients_without_a_certificate_from_the_client_ca(toy, pki):
    good = ChannelSecurity(ca_file=str(pki.ca), cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    server = toy({"SYN_TLS_CERT_FILE": str(pki.server_cert), "SYN_TLS_KEY_FILE": str(pki.server_key),
                  "SYN_TLS_CLIENT_CA_FILE": str(pki.ca)}, good)
    assert caption(server.target, good) == "mean 7 width 16"
    no_cert = ChannelSecurity(ca_file=str(pki.ca))
    assert refusal(server.target, no_cert) == grpc.StatusCode.UNAVAILABLE
    foreign = ChannelSecurity(ca_file=str(pki.ca), cert_file=str(pki.other_client_cert),
                              key_file=str(pki.other_client_key))
    assert refusal(server.target, foreign) == grpc.StatusCode.UNAVAILABLE
    # Probes with the right certificate work; the health-check command speaks mutual TLS from flags or env.
    assert health_status(server.target, security=good) == SERVING
    command = [sys.executable, "-m", "synesthesia.healthcheck", server.target]
    flags = ["--ca", str(pki.ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key)]
    assert subprocess.run(command + flags, cwd=REPO_ROOT, capture_output=True, timeout=60).returncode == 0
    without = subprocess.run(command + ["--ca", str(pki.ca)], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=60)
    assert without.returncode == 1 and "UNREACHABLE" in without.stderr
    env = {"SYN_CLIENT_CA_FILE": str(pki.ca), "SYN_CLIENT_CERT_FILE": str(pki.client_cert),
           "SYN_CLIENT_KEY_FILE": str(pki.client_key), "PATH": "/usr/bin:/bin"}
    assert subprocess.run(command, cwd=REPO_ROOT, capture_output=True, env=env, timeout=60).returncode == 0


def test_token_scheme_is_case_insensitive_health_open_reflection_guarded(toy):
    server = toy({"SYN_AUTH_TOKEN": "s3cret"})
    plain = ChannelSecurity()
    assert refusal(server.target, plain) == grpc.StatusCode.UNAUTHENTICATED
    assert refusal(server.target, plain, (("authorization", "Bearer wrong"),)) == grpc.StatusCode.UNAUTHENTICATED
    assert refusal(server.target, plain, (("authorization", "s3cret"),)) == grpc.StatusCode.UNAUTHENTICATED
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert caption(server.target, plain, (("authorization", f"{scheme} s3cret"),)) == "mean 7 width 16"
    assert health_status(server.target) == SERVING
    with pytest.raises(grpc.RpcError) as err:
        reflection_services(server.target, plain)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "synesthesia.v1.Captioning" in reflection_services(
        server.target, plain, metadata=(("authorization", "Bearer s3cret"),))


def test_reflection_v1_and_v1alpha_open_or_off(toy):
    open_server = toy({"SYN_AUTH_TOKEN": "s3cret", "SYN_REFLECTION": "open"})
    for version in ("v1", "v1alpha"):
        services = reflection_services(open_server.target, ChannelSecurity(), version)
        assert {"synesthesia.v1.Captioning", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection"} <= set(services), services
    off = toy({"SYN_REFLECTION": "off"})
    with pytest.raises(grpc.RpcError) as err:
        reflection_services(off.target, ChannelSecurity())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_reflection_v1_describes_itself(toy):
    from google.protobuf import descriptor_pb2

    server = toy({})
    with grpc.insecure_channel(server.target) as channel:
        method = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        reply = next(iter(method(iter([reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="grpc.reflection.v1.ServerReflection")]), timeout=30)))
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
             for raw in reply.file_descriptor_response.file_descriptor_proto]
    assert [f.package for f in files] == ["grpc.reflection.v1"]
    assert files[0].service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"


def test_metrics_bind_the_service_host_not_every_interface(toy):
    port = free_port()
    server = toy({"SYN_METRICS_PORT": str(port)})
    listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(server.process.pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN}
    assert ("127.0.0.1", port) in listening, listening
    assert ("0.0.0.0", port) not in listening and ("::", port) not in listening


@pytest.mark.parametrize("env, named", [
    ({"SYN_TLS_CERT_FILE": "{server_cert}"}, "SYN_TLS_KEY_FILE"),
    ({"SYN_TLS_KEY_FILE": "{server_key}"}, "SYN_TLS_CERT_FILE"),
    ({"SYN_TLS_CLIENT_CA_FILE": "{ca}"}, "SYN_TLS_CLIENT_CA_FILE"),
    ({"SYN_TLS_CERT_FILE": "/nonexistent.pem", "SYN_TLS_KEY_FILE": "{server_key}"}, "SYN_TLS_CERT_FILE"),
    ({"SYN_MAX_BATCH_SIZE": "sixteen"}, "SYN_MAX_BATCH_SIZE"),
    ({"SYN_MAX_BATCH_SIZE": "0"}, "SYN_MAX_BATCH_SIZE"),
    ({"SYN_REFLECTION": "sometimes"}, "SYN_REFLECTION"),
    ({"SYN_LOG_REQUESTS": "maybe"}, "SYN_LOG_REQUESTS"),
])
def test_half_or_bad_configuration_stops_start_up_naming_the_variable(pki, env, named):
    paths = {"server_cert": pki.server_cert, "server_key": pki.server_key, "ca": pki.ca}
    env = {k: v.format(**paths) for k, v in env.items()}
    result = subprocess.run([sys.executable, "-m", TOY, "--port", str(free_port())], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120,
                            env={**_base_env(), **env})
    assert result.returncode != 0
    assert named in result.stderr, result.stderr
    assert "listening" not in result.stderr  # refused before anything listened


def _base_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("SYN_")} | {"SYN_HOST": "127.0.0.1"}


def test_a_caller_that_gives_up_is_counted_and_logged(toy):
    port = free_port()
    server = toy({"SYN_METRICS_PORT": str(port), "SYN_TOY_DELAY_MS": "1500", "SYN_LOG_FORMAT": "json"})
    with grpc.insecure_channel(server.target) as channel:
        with pytest.raises(grpc.RpcError) as err:
            captioning_pb2_grpc.CaptioningStub(channel).Caption(
                captioning_pb2.CaptionRequest(image=common_pb2.Image(data=solid_png(9))),
                metadata=(("x-request-id", "gave-up-1"),), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wanted = 'syn_rpcs_cancelled_total{method="/synesthesia.v1.Captioning/Caption"} 1.0'
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        if wanted in text:
            break
        time.sleep(0.2)
    assert wanted in text
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    (line,) = [entry for entry in lines if entry.get("request_id") == "gave-up-1"]
    assert line["status"] in ("DEADLINE_EXCEEDED", "CANCELLED") and line["model"] == "toy"
