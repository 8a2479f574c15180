"""The gateway's HTTP port: JSON routes, the OpenAPI document and the browser playground.

It runs in the gateway process on the gateway's event loop (aiohttp), started and
drained by the runtime with the gRPC server (`ServiceHost(frontends=...)`).

    POST /<package.Service>/<Method>   every public RPC (transcoder.py)
    GET  /openapi.json                 the OpenAPI 3.1 document, generated from the .proto files
    GET  /healthz                      200 when the gateway is SERVING, else 503
    GET  /                             the playground (playground/, plain HTML/CSS/JS)

Security is the gRPC port's: the same TLS certificate and key (and client CA for mutual
TLS) on this socket, and the same bearer token, checked by the gRPC interceptor on the
forwarded `Authorization` header. The document, the playground and /healthz are open,
like gRPC health and reflection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import ssl
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.gateway.http import openapi
from services.gateway.http.transcoder import (
    NDJSON,
    HttpCallError,
    Route,
    call_options,
    multicallable,
    parse_request,
    routes_for,
    to_json,
)
from services.gateway.settings import HttpSettings
from services.runtime import Settings

log = logging.getLogger(__name__)
PLAYGROUND = Path(__file__).resolve().parent / "playground"
# base64 makes JSON bodies a third larger than the protobuf messages SYN_MAX_MESSAGE_BYTES bounds.
BODY_OVERHEAD = 4 / 3


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS from the gRPC settings: certificate and key, and a client CA when mutual TLS is asked for."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if not (cert and key):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    client_ca = settings.tls_client_ca_file
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _json_response(payload, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(text=json.dumps(payload), status=status, content_type="application/json",
                        headers=headers)


def _error_response(error: HttpCallError) -> web.Response:
    headers = {"x-request-id": error.request_id} if error.request_id else {}
    if error.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return _json_response(error.body(), error.http_status, headers)


class HttpFrontend:
    """Serves HTTP on SYN_HTTP_PORT and calls the gRPC server it sits beside over a unix socket."""

    def __init__(self, host, port: int, services: Sequence[str] | None = None) -> None:
        self.settings: Settings = host.settings
        self.port = port
        # The servicer's own service and every service it forwards (the gateway's upstreams').
        self.routes = routes_for(services or [host.service_full_name,
                                              *getattr(host.servicer, "forwarded_services", ())])
        self.health_service = host.service_full_name
        # A private socket (0700 folder) for the HTTP -> gRPC hop: no TLS to terminate twice, no
        # client certificate to hold, and the bearer token is still checked on every call.
        self._socket_dir = tempfile.mkdtemp(prefix="syn-gateway-http-")
        self._socket = f"unix:{self._socket_dir}/grpc.sock"
        if not host.server.add_insecure_port(self._socket):
            raise SystemExit(f"could not bind {self._socket}")
        self._channel: grpc.aio.Channel | None = None
        self._runner: web.AppRunner | None = None
        self._document: dict | None = None

    @property
    def max_body_bytes(self) -> int:
        return int(self.settings.max_message_bytes * BODY_OVERHEAD) + 65536

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        size = self.settings.max_message_bytes
        self._channel = grpc.aio.insecure_channel(self._socket, options=[
            ("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)])
        # Compiling the protos takes a moment: off the event loop, once.
        self._document = await asyncio.get_running_loop().run_in_executor(None, self._build_document)
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_get("/openapi.json", self._openapi)
        app.router.add_get("/healthz", self._healthz)
        for route in self.routes:
            app.router.add_post(route.path, self._handler(route))
        app.router.add_get("/", self._index)
        app.router.add_static("/playground/", PLAYGROUND, show_index=False)
        app.middlewares.append(self._json_errors)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.port,
                           ssl_context=server_ssl_context(self.settings), shutdown_timeout=self.settings.drain_seconds)
        await site.start()
        scheme = "https" if server_ssl_context(self.settings) else "http"
        log.info("HTTP/JSON and playground on %s://%s:%d (%d routes)", scheme, self.settings.host, self.port,
                 len(self.routes))

    async def stop(self, grace: float) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._channel is not None:
            await self._channel.close(grace)
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def _build_document(self) -> dict:
        try:
            version = metadata.version("synesthesia-stack")
        except metadata.PackageNotFoundError:
            version = "0"
        return openapi.build_document(self.routes, version=version, auth=bool(self.settings.auth_token))

    # -- handlers --------------------------------------------------------------------------------------
    @web.middleware
    async def _json_errors(self, request: web.Request, handler):
        """Unknown paths and wrong methods answer in the same JSON error model as failed calls."""
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _error_response(HttpCallError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"request body larger than {self.max_body_bytes} bytes "
                f"(SYN_MAX_MESSAGE_BYTES={self.settings.max_message_bytes}, plus base64's third)", http_status=413))
        except web.HTTPMethodNotAllowed as exc:
            return _error_response(HttpCallError(
                grpc.StatusCode.UNIMPLEMENTED, f"{request.method} {request.path}: use "
                f"{', '.join(sorted(exc.allowed_methods))}", http_status=405))
        except web.HTTPNotFound:
            return _error_response(HttpCallError(
                grpc.StatusCode.UNIMPLEMENTED if request.method == "POST" else grpc.StatusCode.NOT_FOUND,
                f"no route {request.method} {request.path}; the routes are listed in /openapi.json",
                http_status=404))

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(PLAYGROUND / "index.html")

    async def _openapi(self, request: web.Request) -> web.Response:
        return _json_response(self._document)

    async def _healthz(self, request: web.Request) -> web.Response:
        try:
            reply = await health_pb2_grpc.HealthStub(self._channel).Check(
                health_pb2.HealthCheckRequest(service=self.health_service), timeout=5)
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.aio.AioRpcError as err:
            status = err.code().name
        return _json_response({"status": status}, 200 if status == "SERVING" else 503)

    def _handler(self, route: Route):
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                return await self._call(route, request)
            except HttpCallError as error:
                return _error_response(error)

        return handle

    async def _call(self, route: Route, request: web.Request) -> web.StreamResponse:
        message = parse_request(route, await request.read())
        options = call_options(request.headers, None)
        stub = multicallable(self._channel, route)
        call = stub(iter(message) if route.client_streaming else message, **options)
        if not route.server_streaming:
            try:
                reply = await call
            except grpc.aio.AioRpcError as err:
                raise HttpCallError.from_rpc_error(err) from None
            return _json_response(to_json(reply), headers=await self._request_id(call))
        return await self._stream(call, request)

    async def _stream(self, call, request: web.Request) -> web.StreamResponse:
        replies = call.__aiter__()
        try:
            first = await anext(replies, None)
        except grpc.aio.AioRpcError as err:  # failed before answering: a plain JSON error with its status
            raise HttpCallError.from_rpc_error(err) from None
        response = web.StreamResponse(headers={"Content-Type": NDJSON, "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            reply = first
            while reply is not None:
                await response.write((json.dumps(to_json(reply)) + "\n").encode())
                reply = await anext(replies, None)
        except grpc.aio.AioRpcError as err:
            await response.write((json.dumps(HttpCallError.from_rpc_error(err).body()) + "\n").encode())
        finally:
            call.cancel()  # the client went away mid-stream: stop the work behind it
        await response.write_eof()
        return response

    @staticmethod
    async def _request_id(call) -> dict:
        trailing = await call.trailing_metadata() or ()
        request_id = next((v for k, v in trailing if k == "x-request-id"), "")
        return {"x-request-id": request_id} if request_id else {}


def http_frontend(host, services: Sequence[str] | None = None) -> HttpFrontend | None:
    """For the runtime's `frontends`: the HTTP front end when SYN_HTTP_PORT is set, else None."""
    port = HttpSettings.from_env().http_port
    return HttpFrontend(host, port, services) if port else None
