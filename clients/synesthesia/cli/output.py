"""How `syn` reports: rich tables for people, --json for scripts, exit codes by gRPC status."""

from __future__ import annotations

import json
import sys

import grpc
from google.protobuf import json_format
from rich.console import Console

console = Console()
errors = Console(stderr=True)

# Exit codes are part of the CLI's contract (docs/cli.md).
EXIT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: 3,
    grpc.StatusCode.NOT_FOUND: 4,
    grpc.StatusCode.UNAVAILABLE: 5,
    grpc.StatusCode.DEADLINE_EXCEEDED: 6,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 7,
    grpc.StatusCode.FAILED_PRECONDITION: 8,
    grpc.StatusCode.UNAUTHENTICATED: 9,
}


def exit_code(code: grpc.StatusCode) -> int:
    return EXIT_CODES.get(code, 1)


def fail_rpc(err: grpc.RpcError) -> None:
    errors.print(f"[red]error[/red] {err.code().name}: {err.details()}")
    sys.exit(exit_code(err.code()))


def emit_json(payload) -> None:
    if hasattr(payload, "DESCRIPTOR"):
        payload = json_format.MessageToDict(payload, preserving_proto_field_name=True)
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")
