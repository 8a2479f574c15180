"""Synesthesia client distribution: generated stubs (`synesthesia.v1`), typed
clients, picture helpers and the `syn` CLI. Depends on grpcio and protobuf,
never on torch."""

__version__ = "0.1.0"
