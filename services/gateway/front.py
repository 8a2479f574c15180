"""SYN_GATEWAY_FRONT_PORT: an nginx front that sends forwarded calls straight to their upstream.

Why: a forwarded call through the Python gateway costs 1.7-2.0 ms p50 at concurrency 1 on a 2-core
machine, and a bare grpc.aio pass-through 1.2-1.4 ms (docs/performance.md); the target is 1 ms. nginx's
gRPC proxy does the same hop in about 0.5 ms. So, when the setting is on, the gateway starts nginx on
that port (a child process it configures, watches and stops) with one route per upstream service
(`/synesthesia.v1.Embedding/...` to SYN_EMBEDDING_TARGET) and everything else (the Gateway service's
chained calls, health, reflection) to the Python gateway itself. The gRPC port keeps working as before.

What the front does for a forwarded call is what the gateway does (upstreams.py, forwarding.py):
- the caller's bearer token is checked against SYN_AUTH_TOKEN and replaced by the gateway's own
  (SYN_GATEWAY_UPSTREAM_TOKEN, else SYN_AUTH_TOKEN); the caller's token never goes upstream;
- the caller's x-request-id goes on, or one is made up; the deadline (grpc-timeout) goes on unchanged;
- TLS and mutual TLS on the published side from SYN_TLS_*, on the upstream side from SYN_CLIENT_*;
- replies, statuses and their google.rpc details come back byte for byte; an upstream that cannot be
  reached is UNAVAILABLE naming it and its SYN_<NAME>_TARGET.
What it does not do: the gateway's per-call metrics and OpenTelemetry span for forwarded calls (the
upstream still records both, and the caller's trace context reaches it); nginx writes an access line
per call to the gateway's log when SYN_LOG_REQUESTS is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from services.gateway.settings import GatewaySettings, UpstreamTargets
from services.gateway.upstreams import upstream_security
from services.runtime import Settings, SettingsError
from synesthesia.channels import ChannelSecurity
from synesthesia.services import UPSTREAMS

log = logging.getLogger("synesthesia")

# RFC 6750's b64token: every bearer token a client can send. Held to it, a token can be written into
# nginx's configuration without quoting or escaping surprises.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_UNAUTHENTICATED = "missing or wrong bearer token in `authorization`"
_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # the system roots, for SYN_CLIENT_TLS without a CA file


def _checked_token(token: str, variable: str) -> str:
    if token and not _TOKEN.fullmatch(token):
        raise SettingsError(f"{variable} holds characters a bearer token cannot (RFC 6750: letters, digits, "
                            f"-._~+/ and trailing =); SYN_GATEWAY_FRONT_PORT needs a token nginx can compare")
    return token


def _quoted(text: str) -> str:
    """A double-quoted nginx string (our own messages and paths: no quotes or dollars in them)."""
    if any(c in text for c in '"$\\\n'):
        raise SettingsError(f"{text!r} cannot be written into the front's nginx configuration")
    return f'"{text}"'


def _address(target: str) -> str:
    """host:port of a gRPC target (host:port, or dns:///name:port)."""
    return target.removeprefix("dns:///").removeprefix("dns:")


def _host(target: str) -> str:
    """The host of a gRPC target, without an IPv6 address's brackets."""
    return _address(target).rsplit(":", 1)[0].strip("[]")


def _bracketed(host: str) -> str:
    """A host as it goes before `:port` (an IPv6 address in brackets)."""
    return f"[{host.strip('[]')}]" if ":" in host else host


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _servers(target: str) -> str:
    """nginx `server` line for a gRPC target; a name stands for every address it resolves to (round-robin)."""
    # A replica that refused a connection sits out a second, as the gateway's reconnect backoff does.
    return f"    server {_address(target)} max_fails=1 fail_timeout=1s;"


def _verified_name(security: ChannelSecurity, target: str) -> str:
    """The name nginx checks in a TLS upstream's certificate: SYN_CLIENT_SERVER_NAME, else the target's host.

    nginx matches DNS names only (not IP addresses in a certificate, as gRPC's own channels do), so an
    address target needs the name set.
    """
    if security.server_name:
        return security.server_name
    host = _host(target)
    if not _is_address(host):
        return host
    raise SettingsError(f"SYN_GATEWAY_FRONT_PORT with TLS upstreams: {target} is an address, and nginx checks "
                        "certificates by name only; set SYN_CLIENT_SERVER_NAME to a name in the certificates")


def _upstream_tls(security: ChannelSecurity, target: str) -> list[str]:
    """grpc_ssl_* lines for a TLS upstream, from the same SYN_CLIENT_* the gateway's channels use."""
    if not security.uses_tls:
        return []
    lines = ["grpc_ssl_verify on;", f"grpc_ssl_trusted_certificate {_quoted(security.ca_file or _CA_BUNDLE)};",
             f"grpc_ssl_name {_quoted(_verified_name(security, target))};", "grpc_ssl_server_name on;",
             "grpc_ssl_session_reuse on;"]
    if security.cert_file:
        lines += [f"grpc_ssl_certificate {_quoted(security.cert_file)};",
                  f"grpc_ssl_certificate_key {_quoted(security.key_file)};"]
    return lines


def nginx_modules(binary: str) -> str:
    """`nginx -V`'s configure line: which modules this build has."""
    try:
        done = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SettingsError(f"SYN_GATEWAY_FRONT_NGINX={binary!r} does not run: {exc}") from None
    configure = done.stderr + done.stdout
    missing = [m for m, ok in (("grpc", "--without-http_grpc_module" not in configure),
                               ("http_v2", "--with-http_v2_module" in configure)) if not ok]
    if done.returncode != 0 or missing:
        raise SettingsError(f"SYN_GATEWAY_FRONT_NGINX={binary!r} lacks {', '.join(missing) or 'a working -V'}: the "
                            "front needs nginx with its gRPC and HTTP/2 modules (Debian's nginx-light has both)")
    return configure


def _temp_paths(run_dir: Path, configure: str) -> list[str]:
    """Every temporary folder this nginx build knows, in the run folder: the package's own defaults
    (/var/lib/nginx) are not writable by a gateway that does not run as root."""
    return [f"  {module}_temp_path {_quoted(str(run_dir / module))};"
            for module in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            if f"--without-http_{module}_module" not in configure]


def render(settings: Settings, own: GatewaySettings, targets: UpstreamTargets, gateway_port: int,
           run_dir: Path, configure: str = "") -> str:
    """The nginx configuration for this gateway: one route per upstream service, the rest to the gateway."""
    caller_token = _checked_token(settings.auth_token, "SYN_AUTH_TOKEN")
    security = upstream_security(settings, own)
    _checked_token(security.token, "SYN_GATEWAY_UPSTREAM_TOKEN")
    scheme = "grpcs" if security.uses_tls else "grpc"
    if settings.tls and not security.uses_tls:
        raise SettingsError("SYN_GATEWAY_FRONT_PORT with SYN_TLS_CERT_FILE: the front reaches the gateway's own "
                            "port over TLS too, and needs SYN_CLIENT_CA_FILE (and SYN_CLIENT_CERT_FILE/KEY_FILE "
                            "under mutual TLS) to do so")
    gateway_scheme = "grpcs" if settings.tls else "grpc"
    lines = [
        "# Written by services/gateway/front.py at each start of the gateway; not meant to be edited.",
        "worker_processes 1;",
        # Run as root, nginx would hand its worker to `nobody`, who cannot enter the private run folder:
        # the worker keeps the gateway's own user instead (never more than the gateway has).
        *([f"user {pwd.getpwuid(os.geteuid()).pw_name};"] if os.geteuid() == 0 else []),
        f"pid {_quoted(str(run_dir / 'nginx.pid'))};",
        "error_log stderr warn;",
        "daemon off;",
        "events { worker_connections 4096; }",
        "http {",
        *_temp_paths(run_dir, configure),
        # One line per call, as JSON, beside the gateway's own access lines.
        "  log_format syn_access escape=json '{\"logger\":\"synesthesia.access\",\"service\":\"gateway-front\","
        "\"time\":\"$time_iso8601\",\"method\":\"$uri\",\"status\":\"$sent_trailer_grpc_status\","
        "\"http_status\":$status,\"latency_ms\":$request_time,\"request_id\":\"$syn_request_id\","
        "\"peer\":\"$remote_addr\",\"upstream\":\"$upstream_addr\"}';",
        f"  access_log {'/dev/stderr syn_access' if settings.log_requests else 'off'};",
        "  map $http_x_request_id $syn_request_id { \"\" $request_id; default $http_x_request_id; }",
    ]
    if caller_token:
        # Two checks. The map looks the whole header up in a hash table (case-folded, so the scheme's
        # case does not matter): a wrong token costs the same whatever its first characters, unlike
        # a character-by-character comparison. The regular expression, run only on what passed, holds
        # the token's own case.
        lines += ["  map $http_authorization $syn_token_folded { default 0; "
                  f"{_quoted('bearer ' + caller_token.lower())} 1; }}"]
    for service in UPSTREAMS:
        lines += [f"  upstream syn_{service.name} {{", _servers(targets.target(service.name)),
                  "    keepalive 64;", "    keepalive_requests 1000000;", "    keepalive_timeout 300s;", "  }"]
    lines += ["  upstream syn_gateway {", f"    server {_local(settings.host)}:{gateway_port};", "    keepalive 16;",
              "    keepalive_requests 1000000;", "  }"]
    lines += [
        "  server {",
        f"    listen {_bracketed(settings.host)}:{own.front_port}{' ssl' if settings.tls else ''} http2;",
        # The upstream refuses oversized messages itself, naming SYN_MAX_MESSAGE_BYTES.
        "    client_max_body_size 0;",
        "    keepalive_requests 1000000;",
        "    keepalive_timeout 300s;",
        "    http2_max_concurrent_streams 1024;",
        # Calls end by their deadline (grpc-timeout, enforced upstream); these only bound a silent peer.
        "    grpc_read_timeout 3600s;",
        "    grpc_send_timeout 3600s;",
        "    grpc_socket_keepalive on;",
    ]
    if settings.tls:
        lines += [f"    ssl_certificate {_quoted(settings.tls_cert_file)};",
                  f"    ssl_certificate_key {_quoted(settings.tls_key_file)};",
                  "    ssl_protocols TLSv1.2 TLSv1.3;"]
        if settings.tls_client_ca_file:
            # nginx finishes the handshake without a good client certificate and answers HTTP 495/496,
            # which gRPC clients would read as INTERNAL: a deliberate status instead.
            lines += [f"    ssl_client_certificate {_quoted(settings.tls_client_ca_file)};",
                      "    ssl_verify_client on;", "    ssl_verify_depth 4;",
                      "    error_page 495 496 = @syn_no_client_certificate;",
                      "    location @syn_no_client_certificate {",
                      *_grpc_status(16, "a client certificate signed by the CA in SYN_TLS_CLIENT_CA_FILE is "
                                        "required (mutual TLS)"),
                      "    }"]
    for service in UPSTREAMS:
        target = targets.target(service.name)
        lines += [f"    location /{service.grpc_service}/ {{"]
        if caller_token:
            exact = f"^(?i:bearer) {re.escape(caller_token)}$"
            lines += ["      if ($syn_token_folded = 0) { return 418; }",
                      f"      if ($http_authorization !~ \"{exact}\") {{ return 418; }}",
                      "      error_page 418 = @syn_unauthenticated;"]
        bearer = f"Bearer {security.token}" if security.token else ""
        lines += [f"      grpc_set_header authorization {_quoted(bearer)};",
                  "      grpc_set_header x-request-id $syn_request_id;",
                  *(f"      {line}" for line in _upstream_tls(security, target)),
                  f"      grpc_pass {scheme}://syn_{service.name};",
                  f"      error_page 502 504 = @syn_down_{service.name};",
                  "    }",
                  f"    location @syn_down_{service.name} {{",
                  *_grpc_status(14, f"upstream {service.name} at {target} failed: UNAVAILABLE: no connection "
                                    f"from the gateway's front (SYN_GATEWAY_FRONT_PORT; {service.target_variable})"),
                  "    }"]
    # The front reaches the gateway's own port on loopback, checking its certificate as `localhost`
    # (or SYN_CLIENT_SERVER_NAME): the name every certificate for a local port carries.
    gateway_tls = [f"      {line}" for line in _upstream_tls(security, "localhost:0")] if settings.tls else []
    lines += ["    location / {",
              *gateway_tls,
              f"      grpc_pass {gateway_scheme}://syn_gateway;",
              "      error_page 502 504 = @syn_down_gateway;",
              "    }",
              "    location @syn_down_gateway {",
              *_grpc_status(14, f"the gateway behind its front ({_local(settings.host)}:{gateway_port}) cannot "
                                "be reached"),
              "    }"]
    if caller_token:
        lines += ["    location @syn_unauthenticated {", *_grpc_status(16, _UNAUTHENTICATED), "    }"]
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def _local(host: str) -> str:
    """How this machine reaches a port bound to `host` (a wildcard address: over loopback)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        return "127.0.0.1"
    return _bracketed(host)


def _grpc_status(code: int, message: str) -> list[str]:
    """A trailers-only gRPC reply with this status (how nginx answers a gRPC call itself)."""
    return ["      default_type application/grpc;",
            f"      add_header grpc-status {code} always;",
            f"      add_header grpc-message {_quoted(message)} always;",
            "      add_header x-request-id $syn_request_id always;",
            "      return 204;"]


def _stop_with_parent() -> None:
    """In the child, before nginx runs: SIGTERM (nginx's fast stop) when the gateway process dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class NginxFront:
    """The nginx child process: configured from settings, started before SERVING, restarted if it dies."""

    def __init__(self, host, own: GatewaySettings) -> None:
        self.settings: Settings = host.settings
        self.own = own
        # Debian puts nginx in /usr/sbin, which is not on an ordinary user's PATH.
        self.binary = shutil.which(own.front_nginx) or shutil.which(own.front_nginx, path="/usr/sbin:/sbin")
        if self.binary is None:
            raise SettingsError(f"SYN_GATEWAY_FRONT_NGINX={own.front_nginx!r}: no such program (the front needs "
                                "nginx with its gRPC module; Debian's nginx-light has it)")
        configure = nginx_modules(self.binary)
        if host.settings.tls and "--with-http_ssl_module" not in configure:
            raise SettingsError(f"SYN_GATEWAY_FRONT_NGINX={own.front_nginx!r} has no TLS (http_ssl module), and "
                                "SYN_TLS_CERT_FILE asks for it")
        if own.front_port == host.settings.port:
            raise SettingsError("SYN_GATEWAY_FRONT_PORT is the gateway's own gRPC port (SYN_PORT): give it another")
        # Holds the configuration (the upstream token is in it) and nginx's pid and temporary files.
        self.run_dir = Path(tempfile.mkdtemp(prefix="syn-gateway-front-"))
        self.config = self.run_dir / "nginx.conf"
        targets = UpstreamTargets.from_env()
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(render(self.settings, own, targets, host.port, self.run_dir, configure))
        self.process: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task | None = None
        self._follow: asyncio.Task | None = None
        # Upstream targets given by name (not address): watched for address changes.
        self._names = sorted({_address(targets.target(s.name)) for s in UPSTREAMS
                              if not _is_address(_host(targets.target(s.name)))})
        self._stopping = False

    async def _spawn(self) -> None:
        # Its own process group, so a stop reaches its workers too; and it stops when the gateway dies.
        self.process = await asyncio.create_subprocess_exec(
            self.binary, "-e", "stderr", "-c", str(self.config), "-p", str(self.run_dir),
            stdin=asyncio.subprocess.DEVNULL, start_new_session=True, preexec_fn=_stop_with_parent)
        address = _local(self.settings.host).strip("[]")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise RuntimeError(f"nginx (SYN_GATEWAY_FRONT_PORT={self.own.front_port}) exited with "
                                   f"{self.process.returncode} at start; its messages are above in this log")
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(address, self.own.front_port), 0.5)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        raise RuntimeError(f"nginx did not listen on SYN_GATEWAY_FRONT_PORT={self.own.front_port} within 10 s")

    async def start(self) -> None:
        await self._spawn()
        self._watch = asyncio.create_task(self._restart_when_gone())
        self._follow = asyncio.create_task(self._reload_when_addresses_change())
        log.info("gateway front (nginx %d) on %s:%d: forwarded services go straight to their upstreams",
                 self.process.pid, self.settings.host, self.own.front_port)

    async def _restart_when_gone(self) -> None:
        """A front that dies (killed, out of memory) is started again, at most once a second."""
        while not self._stopping:
            code = await self.process.wait()
            if self._stopping:
                return
            log.error("gateway front: nginx exited with %s; starting it again", code)
            # Workers outlive a master that was killed alone, and would keep the port: end its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await asyncio.sleep(1.0)
            try:
                await self._spawn()
            except RuntimeError as exc:
                log.error("gateway front: %s", exc)

    async def _addresses(self) -> dict[str, frozenset]:
        loop = asyncio.get_running_loop()
        found = {}
        for name in self._names:
            host, _, port = name.rpartition(":")
            try:
                found[name] = frozenset(info[4][0] for info in await loop.getaddrinfo(host, port))
            except OSError:
                found[name] = frozenset()
        return found

    async def _reload_when_addresses_change(self) -> None:
        """nginx resolves upstream names once, when it loads its configuration; compose and Kubernetes
        give a restarted replica a new address. So names are resolved again every
        SYN_GATEWAY_HEALTH_INTERVAL_S (at least 1 s) and, when the addresses change, nginx reloads
        (SIGHUP: new connections to the new addresses, open calls finish on the old ones)."""
        if not self._names:
            return
        known = await self._addresses()
        while not self._stopping:
            await asyncio.sleep(max(1.0, self.own.health_interval_s))
            now = await self._addresses()
            if now != known and self.process is not None and self.process.returncode is None:
                changed = sorted(name for name in now if now[name] != known.get(name))
                log.info("gateway front: %s resolve to new addresses; nginx reloads", ", ".join(changed))
                self.process.send_signal(signal.SIGHUP)
            known = now

    async def stop(self, grace: float) -> None:
        """nginx's graceful stop (SIGQUIT: finish open calls, accept none), then SIGKILL after `grace`."""
        self._stopping = True
        for task in (self._watch, self._follow):
            if task is not None:
                task.cancel()
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=max(grace, 0.1))
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def nginx_front(host) -> NginxFront | None:
    """For the runtime's `frontends`: the nginx front when SYN_GATEWAY_FRONT_PORT is set, else None."""
    own = GatewaySettings.from_env()
    return NginxFront(host, own) if own.front_port else None
