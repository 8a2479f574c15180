"""The gateway's HTTP/JSON port, driven with a plain HTTP client (urllib) against a real stack."""

from __future__ import annotations

import base64
import http.client
import io
import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile
from google.protobuf import descriptor_pool
from openapi_spec_validator import validate
from PIL import Image

from models.shapesworld import EVAL_SEEDS, render_scene
from scripts.dev_pki import make_pki
from synesthesia.pictures import png_bytes
from synesthesia.v1 import gateway_pb2  # noqa: F401 - registers the Gateway descriptor
from tests.conftest import gateway_env, http_url
from tests.servers import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def post(url: str, body, headers: dict | None = None, context=None):
    """(HTTP status, headers, body text) of a POST; errors are answers too."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120, context=context) as reply:
            return reply.status, reply.headers, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read().decode()


def get(url: str, context=None):
    try:
        with urllib.request.urlopen(url, timeout=30, context=context) as reply:
            return reply.status, reply.headers, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read().decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decoded(data_b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_b64))).convert("RGB"))


def wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, 16000, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def assert_error(status: int, body: str, http_status: int, code: str) -> dict:
    assert status == http_status, body
    error = json.loads(body)["error"]
    assert error["code"] == http_status and error["status"] == code and error["message"], error
    return error


def violations(error: dict) -> dict[str, str]:
    return {v["field"]: v["description"] for d in error["details"] for v in d.get("fieldViolations", [])}


@pytest.fixture(scope="module")
def base(gateway) -> str:
    return http_url(gateway)


@pytest.fixture(scope="module")
def scene():
    return render_scene(EVAL_SEEDS[7], objects=2, domain="day")


@pytest.fixture(scope="module")
def document(base):
    status, headers, body = get(f"{base}/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    return json.loads(body)


def test_openapi_document_is_valid_and_covers_every_rpc_with_its_comments(document):
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    service = descriptor_pool.Default().FindServiceByName("synesthesia.v1.Gateway")
    for method in service.methods:
        operation = document["paths"][f"/synesthesia.v1.Gateway/{method.name}"]["post"]
        assert operation["summary"] and operation["responses"]["default"]
    proto = (ROOT / "protos/synesthesia/v1/gateway.proto").read_text()
    imagine = document["paths"]["/synesthesia.v1.Gateway/Imagine"]["post"]
    assert imagine["summary"] in proto  # the .proto comment, word for word
    request = document["components"]["schemas"]["synesthesia.v1.ImagineRequest"]
    assert request["properties"]["imageCount"]["description"] == "How many images, 1 to 16; 0 means 1."
    stream = document["paths"]["/synesthesia.v1.Gateway/RunPipeline"]["post"]["responses"]["200"]["content"]
    assert "application/x-ndjson" in stream
    assert "security" not in document  # this gateway has no token


def test_every_route_answers_json(base, document):
    """Every documented route, including RPCs added after this test: an empty request gets a JSON
    answer, either the response or a deliberate status (never 'no such route')."""
    for path in document["paths"]:
        status, headers, body = post(base + path, {})
        first = json.loads(body.splitlines()[0]) if body.strip() else {}
        if status == 200:
            continue
        error = first["error"]
        assert error["status"] not in {"UNIMPLEMENTED", "INTERNAL", "UNKNOWN"}, (path, error)
        assert error["code"] == status


def test_describe_returns_caption_and_attention(base, scene):
    status, headers, body = post(f"{base}/synesthesia.v1.Gateway/Describe",
                                 {"image": {"data": b64(png_bytes(scene.image))}, "beamSize": 3})
    assert status == 200, body
    assert headers["x-request-id"]
    caption = json.loads(body)["caption"]
    assert caption["caption"] and len(caption["words"]) == len(caption["caption"].split())
    attention = caption["words"][0]["attention"]["values"]
    shape = [int(n) for n in attention["shape"]]  # int64: strings in the canonical JSON mapping
    values = np.frombuffer(base64.b64decode(attention["dataF32le"]), "<f4").reshape(shape)
    assert abs(values.sum() - 1) < 1e-3


def test_imagine_listen_translate(base, scene):
    status, _, body = post(f"{base}/synesthesia.v1.Gateway/Imagine",
                           {"prompt": "a large red circle", "image_count": 2, "seed": "7"})  # snake_case works too
    assert status == 200, body
    imagined = json.loads(body)
    assert imagined["seed"] == "7" and len(imagined["images"]) == 2
    assert all(decoded(i["image"]["data"]).shape == (64, 64, 3) for i in imagined["images"])
    assert all(-1 <= i["promptAgreement"] <= 1 and i["caption"] for i in imagined["images"])

    status, _, body = post(f"{base}/synesthesia.v1.Gateway/Listen", {
        "image": {"data": b64(png_bytes(scene.image))}, "audio": {"encoded": b64(wav(scene.audio))}})
    assert status == 200, body
    heard = json.loads(body)
    truth = scene.objects[scene.sounding_index]
    assert truth.colour in heard["summary"] and truth.shape in heard["summary"]
    assert heard["box"]["xMaxPx"] > heard["box"]["xMinPx"]

    status, _, body = post(f"{base}/synesthesia.v1.Gateway/Translate",
                           {"image": {"data": b64(png_bytes(scene.image))}, "model": "day2night"})
    assert status == 200, body
    night = json.loads(body)
    assert decoded(night["image"]["data"]).shape == scene.image.shape and night["caption"]
    # A scene where sketch2photo expects a sketch: the built-in's note comes through as JSON.
    status, _, body = post(f"{base}/synesthesia.v1.Gateway/Translate",
                           {"image": {"data": b64(png_bytes(scene.image))}, "model": "sketch2photo"})
    assert status == 200, body
    sketched = json.loads(body)
    assert sketched["model"] == "sketch2photo" and "'sketch2photo'" in sketched["warnings"][0]


def test_run_pipeline_streams_ndjson_events(base, scene):
    spec = (ROOT / "docs/examples/pipeline.yaml").read_text()
    status, headers, body = post(f"{base}/synesthesia.v1.Gateway/RunPipeline",
                                 {"spec": spec, "inputs": {"scene": b64(png_bytes(scene.image))}})
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson"), body
    events = [json.loads(line) for line in body.splitlines()]
    finished = {e["step"] for e in events if e.get("state") == "STEP_STATE_FINISHED"}
    assert finished == {"look", "redraw", "night", "night_caption"}, events
    caption = next(e for e in events if e["step"] == "look" and e["state"] == "STEP_STATE_FINISHED")
    assert json.loads(caption["outputJson"])["caption"]


def test_pipeline_failing_mid_stream_ends_with_an_error_line(base, scene):
    spec = ("steps:\n- {name: look, call: captioning.Caption, request: {image: {data: '${inputs.scene}'}}}\n"
            "- {name: bad, call: generation.ImageToImage, request: {image: '${look.caption}', model: nope}}\n")
    status, _, body = post(f"{base}/synesthesia.v1.Gateway/RunPipeline",
                           {"spec": spec, "inputs": {"scene": b64(png_bytes(scene.image))}})
    assert status == 200  # the stream had started
    lines = [json.loads(line) for line in body.splitlines()]
    assert any(e.get("state") == "STEP_STATE_FAILED" for e in lines[:-1])
    assert lines[-1]["error"]["status"] in {"INVALID_ARGUMENT", "NOT_FOUND"}, lines[-1]

    # A spec refused before any step runs: a plain JSON error with the status's HTTP code.
    status, _, body = post(f"{base}/synesthesia.v1.Gateway/RunPipeline", {"spec": "steps: [{name: x}]"})
    assert_error(status, body, 400, "INVALID_ARGUMENT")


def test_errors_carry_the_grpc_status_and_field_violations(base, scene):
    status, _, body = post(f"{base}/synesthesia.v1.Gateway/Describe", {"image": {"data": b64(b"not an image")}})
    error = assert_error(status, body, 400, "INVALID_ARGUMENT")
    assert error["grpcCode"] == 3 and "image.data" in violations(error)
    assert any(d["@type"].endswith("google.rpc.RequestInfo") for d in error["details"])

    status, _, body = post(f"{base}/synesthesia.v1.Gateway/Imagine", {"prompt": "a red circle", "imageCount": 99})
    assert "imageCount" in violations(assert_error(status, body, 400, "INVALID_ARGUMENT")) or \
        "image_count" in violations(json.loads(body)["error"])

    status, _, body = post(f"{base}/synesthesia.v1.Gateway/Translate",
                           {"image": {"data": b64(png_bytes(scene.image))}, "model": "nope"})
    assert_error(status, body, 404, "NOT_FOUND")

    # Bodies that are not the request message: the JSON field is named.
    status, _, body = post(f"{base}/synesthesia.v1.Gateway/Imagine", {"prompt": "x", "colour": "red"})
    assert "colour" in violations(assert_error(status, body, 400, "INVALID_ARGUMENT"))
    status, _, body = post(f"{base}/synesthesia.v1.Gateway/Imagine", {"prompt": 5})
    assert "prompt" in violations(assert_error(status, body, 400, "INVALID_ARGUMENT"))
    status, _, body = post(f"{base}/synesthesia.v1.Gateway/Imagine", b'{"prompt": ')
    assert "body" in violations(assert_error(status, body, 400, "INVALID_ARGUMENT"))
    status, _, body = post(f"{base}/synesthesia.v1.Gateway/Imagine", {"prompt": "x"},
                           headers={"Connect-Timeout-Ms": "soon"})
    assert_error(status, body, 400, "INVALID_ARGUMENT")

    status, _, body = post(f"{base}/synesthesia.v1.Gateway/Nope", {})
    assert_error(status, body, 404, "UNIMPLEMENTED")
    status, _, body = get(f"{base}/synesthesia.v1.Gateway/Imagine")
    assert_error(status, body, 405, "UNIMPLEMENTED")


def test_body_over_the_message_limit_is_refused_as_json(shared_service, upstream_targets):
    small = shared_service("gateway", gateway_env(upstream_targets) | {
        "SYN_HTTP_PORT": str(free_port()), "SYN_MAX_MESSAGE_BYTES": "65536"})
    status, _, body = post(f"{http_url(small)}/synesthesia.v1.Gateway/Imagine", {"prompt": "x" * 200_000})
    error = assert_error(status, body, 413, "RESOURCE_EXHAUSTED")
    assert "SYN_MAX_MESSAGE_BYTES" in error["message"]


def test_token_and_mutual_tls_are_the_grpc_settings(service_process, upstream_targets, tmp_path, scene):
    pki = make_pki(tmp_path / "pki")
    port = free_port()
    service_process("gateway", gateway_env(upstream_targets) | {
        "SYN_HTTP_PORT": str(port), "SYN_AUTH_TOKEN": "s3cret", "SYN_TLS_CERT_FILE": str(pki.server_cert),
        "SYN_TLS_KEY_FILE": str(pki.server_key), "SYN_TLS_CLIENT_CA_FILE": str(pki.ca)}, wait=False)

    def context(cert=None, key=None) -> ssl.SSLContext:
        made = ssl.create_default_context(cafile=str(pki.ca))
        if cert:
            made.load_cert_chain(str(cert), str(key))
        return made

    client = context(pki.client_cert, pki.client_key)
    base = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            status, _, body = get(f"{base}/openapi.json", context=client)
            break
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, "the HTTPS port never answered"
            time.sleep(0.3)
    assert status == 200 and json.loads(body)["security"] == [{"bearer": []}]  # the document is open
    url = f"{base}/synesthesia.v1.Gateway/Translate"
    request = {"image": {"data": b64(png_bytes(scene.image))}, "model": "day2night"}
    status, headers, body = post(url, request, context=client)
    assert_error(status, body, 401, "UNAUTHENTICATED")
    assert headers["WWW-Authenticate"] == "Bearer"
    status, _, body = post(url, request, headers={"Authorization": "Bearer wrong"}, context=client)
    assert status == 401
    status, _, body = post(url, request, headers={"Authorization": "Bearer s3cret"}, context=client)
    assert status == 200 and json.loads(body)["caption"], body

    refused = (urllib.error.URLError, ConnectionError, ssl.SSLError, http.client.HTTPException)
    for other in (context(), context(pki.other_client_cert, pki.other_client_key)):  # no or a foreign certificate
        with pytest.raises(refused):
            post(url, request, headers={"Authorization": "Bearer s3cret"}, context=other)
    with pytest.raises(refused):  # and no plain HTTP on a TLS port
        get(f"http://127.0.0.1:{port}/openapi.json")


def test_client_streaming_takes_a_json_array_and_health_is_served(base, scene):
    chunks = np.array_split(scene.audio.astype("<f4"), 4)
    requests = [{"options": {"kind": "FEATURE_KIND_POWER", "nFft": 256}} if i == 0 else {} for i in range(4)]
    for request, chunk in zip(requests, chunks):
        request["chunk"] = {"samplesF32le": b64(chunk.tobytes()), "sampleRateHz": 16000}
    status, _, body = post(f"{base}/synesthesia.v1.Audio/StreamFeatures", json.dumps(requests).encode())
    assert status == 200, body
    reply = json.loads(body)
    assert reply["chunkCount"] == 4 and int(reply["result"]["features"]["shape"][0]) == 129
    ndjson = "\n".join(json.dumps(r) for r in requests).encode()  # NDJSON bodies work too
    status, _, body = post(f"{base}/synesthesia.v1.Audio/StreamFeatures", ndjson)
    assert status == 200 and json.loads(body)["chunkCount"] == 4

    status, _, body = get(f"{base}/healthz")
    assert status == 200 and json.loads(body) == {"status": "SERVING"}
    status, headers, body = get(f"{base}/")
    assert status == 200 and "<title>Synesthesia playground</title>" in body
