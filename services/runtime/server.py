"""The one way a Synesthesia service runs.

`run_service` parses the command line, reads settings, and serves the
servicer on a grpc.aio server with health, reflection, limits, metrics,
structured errors and a graceful drain. Health stays NOT_SERVING until the
servicer's `warm_up()` has loaded and exercised its models.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from . import logs, metrics, reflection, tracing
from .interceptors import CallInterceptor
from .settings import Settings, SettingsError

log = logging.getLogger("synesthesia")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def server_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        # gRPC's own refusal does not name our setting: it lets through up to twice the limit and the
        # interceptor refuses anything over SYN_MAX_MESSAGE_BYTES by name.
        ("grpc.max_receive_message_length", 2 * settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS from SYN_TLS_CERT_FILE/KEY_FILE; with SYN_TLS_CLIENT_CA_FILE, clients must present a certificate."""
    if not settings.tls:
        return None
    client_ca = Path(settings.tls_client_ca_file).read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(Path(settings.tls_key_file).read_bytes(), Path(settings.tls_cert_file).read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


class ServiceHost:
    """A running server plus its health servicer, for `serve` and for tests."""

    def __init__(self, settings: Settings, servicer, add_to_server: Callable, service_full_name: str,
                 frontends: Sequence[Callable[["ServiceHost"], object]] = ()) -> None:
        self.settings = settings
        self.servicer = servicer
        self.service_full_name = service_full_name
        self.health = health.aio.HealthServicer()
        self._watch_task: asyncio.Task | None = None
        self.server = grpc.aio.server(
            # SYN_MAX_CONCURRENT_RPCS is enforced by the interceptor, which exempts health and reflection.
            interceptors=[*tracing.server_interceptors(), CallInterceptor(settings)],
            options=server_options(settings),
        )
        add_to_server(servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        # A servicer that also serves other services (the gateway forwarding its upstreams') lists them.
        extra = tuple(getattr(servicer, "forwarded_services", ()))
        if settings.reflection != "off":
            reflection.enable(self.server, (service_full_name, *extra, health.SERVICE_NAME))
        address = f"{settings.host}:{settings.port}"
        credentials = server_credentials(settings)
        if credentials is not None:
            self.port = self.server.add_secure_port(address, credentials)
        else:
            self.port = self.server.add_insecure_port(address)
        if not self.port:
            raise SystemExit(f"could not bind {address}")
        # Other ways in on the same process and event loop (the gateway's HTTP/JSON): each is built
        # here, before the server starts, so it can add a port of its own, and has `start()`/`stop(grace)`;
        # a factory returns None when its setting leaves it off.
        self.frontends = [f for f in (make(self) for make in frontends) if f is not None]

    async def set_health(self, status) -> None:
        for name in ("", self.service_full_name):
            await self.health.set(name, status)

    async def start(self) -> None:
        await self.set_health(NOT_SERVING)
        await self.server.start()
        security = ("mutual TLS" if self.settings.tls_client_ca_file else "TLS") if self.settings.tls else "plaintext"
        log.info("%s listening on %s:%d (%s%s, warming up)", self.service_full_name, self.settings.host, self.port,
                 security, ", bearer token required" if self.settings.auth_token else "")
        for frontend in self.frontends:
            await frontend.start()
        warm_up = getattr(self.servicer, "warm_up", None)
        if warm_up is not None:
            if inspect.iscoroutinefunction(warm_up):
                await warm_up()
            else:
                await asyncio.get_running_loop().run_in_executor(None, warm_up)
        # A servicer whose readiness depends on others (the gateway on its upstreams)
        # reports it through watch_readiness(set_ready) instead of being SERVING for good.
        watch = getattr(self.servicer, "watch_readiness", None)
        if watch is not None:
            self._watch_task = asyncio.create_task(watch(self.set_ready))
        else:
            await self.set_health(SERVING)
            log.info("%s serving", self.service_full_name)

    async def set_ready(self, ready: bool, service: str | None = None) -> None:
        """The whole server's readiness, or (with `service`) one named service's, e.g. a forwarded one."""
        if service is None:
            await self.set_health(SERVING if ready else NOT_SERVING)
        else:
            await self.health.set(service, SERVING if ready else NOT_SERVING)

    async def drain(self) -> None:
        """Refuse new work, let in-flight calls finish within drain_seconds, then close."""
        await self.health.enter_graceful_shutdown()
        if self._watch_task is not None:
            self._watch_task.cancel()
        grace = self.settings.drain_seconds
        await asyncio.gather(self.server.stop(grace=grace), *(f.stop(grace) for f in self.frontends))
        close = getattr(self.servicer, "close", None)
        if close is not None:
            result = close()
            if inspect.isawaitable(result):
                await result
        log.info("%s stopped", self.service_full_name)


async def serve(settings: Settings, servicer_factory: Callable[[Settings], object], add_to_server: Callable,
                service_full_name: str, frontends: Sequence[Callable[[ServiceHost], object]] = ()) -> None:
    try:
        servicer = servicer_factory(settings)
        host = ServiceHost(settings, servicer, add_to_server, service_full_name, frontends)
    except SettingsError as exc:  # the servicer's or a front end's own settings
        raise SystemExit(f"{service_full_name}: {exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    log.info("%s: event loop %s.%s (SYN_EVENT_LOOP=%s)", service_full_name, type(loop).__module__,
             type(loop).__qualname__, settings.event_loop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics.serve_metrics(settings.metrics_port, settings.metrics_host or settings.host)
    starting = asyncio.create_task(host.start())
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done() and starting.exception() is not None:
        # Fail fast and visibly (a missing checkpoint, a bad setting): stop listening, then exit non-zero.
        waiter.cancel()
        await asyncio.gather(host.server.stop(0), *(f.stop(0) for f in host.frontends))
        error = starting.exception()
        log.error("%s failed to start: %s: %s", service_full_name, type(error).__name__, error)
        raise SystemExit(1) from error
    await waiter
    log.info("%s draining (up to %.1fs)", service_full_name, settings.drain_seconds)
    starting.cancel()
    await host.drain()
    tracing.shutdown()


def parse_args(name: str, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m services.{name}", description=f"Run the {name} service.")
    parser.add_argument("--host", help="address to bind (SYN_HOST)")
    parser.add_argument("--port", type=int, help="gRPC port (SYN_PORT)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus port, 0 = off (SYN_METRICS_PORT)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N (SYN_DEVICE)")
    return parser.parse_args(argv)


def bound_threads(count: int) -> None:
    """One thread setting (SYN_TORCH_THREADS) for every native pool the service loaded.

    torch's intra-op pool gets `count` (0 keeps torch's default); FAISS's OpenMP pool gets the same
    number as torch, so a search never spreads over more cores than the model may use (by default
    FAISS takes every core for each search, and concurrent searches then contend for them).
    """
    torch = sys.modules.get("torch")
    if count and torch is not None:
        torch.set_num_threads(count)
    faiss = sys.modules.get("faiss")
    threads = count or (torch.get_num_threads() if torch is not None else 0)
    if faiss is not None and threads:
        faiss.omp_set_num_threads(threads)


def run_service(name: str, servicer_factory: Callable[[Settings], object], add_to_server: Callable,
                service_full_name: str, argv: list[str] | None = None,
                frontends: Sequence[Callable[[ServiceHost], object]] = ()) -> None:
    args = parse_args(name, argv)
    try:
        settings = Settings.from_env(host=args.host, port=args.port, metrics_port=args.metrics_port,
                                     device=args.device)
    except SettingsError as exc:
        # A bad setting stops start-up with the variable's name, before anything listens.
        raise SystemExit(f"{name}: {exc}") from None
    logs.configure(name, settings.log_level, settings.log_format)
    tracing.setup(name, settings.otlp_endpoint, settings.trace_sample_ratio)
    bound_threads(settings.torch_threads)
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        runner.run(serve(settings, servicer_factory, add_to_server, service_full_name, frontends))


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """SYN_EVENT_LOOP's loop (None: the standard library's)."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None
