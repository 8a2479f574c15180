"""How a caller reaches a Synesthesia service: plaintext or TLS, mutual TLS, bearer token.

One place for everything that opens a channel to a service: the typed Client
and `syn`, the health-check command, `make up`, and the gateway's channels to
its upstreams. From the environment (`ChannelSecurity.from_env()`):

| variable | meaning |
| --- | --- |
| `SYN_CLIENT_CA_FILE` | PEM roots that verify the server's certificate; TLS when set |
| `SYN_CLIENT_CERT_FILE`, `SYN_CLIENT_KEY_FILE` | client certificate and key for mutual TLS (both or neither) |
| `SYN_CLIENT_SERVER_NAME` | name to check in the server's certificate instead of the target's host |
| `SYN_CLIENT_TLS` | `true`: TLS with the system's roots (no CA file) |
| `SYN_TOKEN` | bearer token sent as `authorization: Bearer <token>` |

Half a configuration (a certificate without its key) is a ValueError naming
what is missing, never a silent plaintext channel.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc

ENV_NAMES = {"ca_file": "SYN_CLIENT_CA_FILE", "cert_file": "SYN_CLIENT_CERT_FILE",
             "key_file": "SYN_CLIENT_KEY_FILE", "server_name": "SYN_CLIENT_SERVER_NAME",
             "tls": "SYN_CLIENT_TLS", "token": "SYN_TOKEN"}


@dataclass(frozen=True)
class ChannelSecurity:
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""
    tls: bool = False
    token: str = ""
    # What each field is called where it came from (a variable, a flag), for error messages.
    names: Mapping[str, str] = field(default_factory=lambda: dict(ENV_NAMES), compare=False, repr=False)

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            given, missing = ("cert_file", "key_file") if self.cert_file else ("key_file", "cert_file")
            raise ValueError(f"{self.names[given]} is set but {self.names[missing]} is not: "
                             "a client certificate needs its key")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ValueError(f"{self.names[name]}={path!r}: no such file")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "ChannelSecurity":
        """From SYN_CLIENT_* and SYN_TOKEN; keyword overrides (None = not given) win."""
        environ = os.environ if environ is None else environ
        values = {name: environ.get(variable, "").strip() for name, variable in ENV_NAMES.items()}
        values["tls"] = values["tls"].lower() in ("1", "true", "yes", "on")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_token(self, token: str) -> "ChannelSecurity":
        return replace(self, token=token)

    @property
    def uses_tls(self) -> bool:
        return bool(self.tls or self.ca_file or self.cert_file)

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.uses_tls:
            return None
        read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
        return grpc.ssl_channel_credentials(root_certificates=read(self.ca_file),
                                            private_key=read(self.key_file),
                                            certificate_chain=read(self.cert_file))

    def options(self) -> list[tuple[str, object]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name and self.uses_tls else []

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def channel(self, target: str, options: Sequence[tuple[str, object]] = ()) -> grpc.Channel:
        """A blocking channel to `target` (the token goes per call: see `metadata()`)."""
        options = list(options) + self.options()
        credentials = self.credentials()
        if credentials is None:
            return grpc.insecure_channel(target, options=options)
        return grpc.secure_channel(target, credentials, options=options)

    def aio_channel(self, target: str, options: Sequence[tuple[str, object]] = (),
                    interceptors: Sequence[object] | None = None) -> grpc.aio.Channel:
        options = list(options) + self.options()
        credentials = self.credentials()
        if credentials is None:
            return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
        return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
