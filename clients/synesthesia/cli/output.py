"""How `syn` reports: rich tables for people, --json for scripts, exit codes by gRPC status.

Errors name what the user typed: a field violation from the server (`image_count`)
is reported under the command's flag (`-n`) when the command says which flag fills
that field, and under --json errors are JSON on stdout too.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping

import grpc
from google.protobuf import json_format
from rich.console import Console
from rich.markup import escape

from synesthesia.status import field_violations

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
USAGE_EXIT = 2


class Output:
    """Process-wide output mode: set once by the CLI's global options."""

    as_json: bool = False


def exit_code(code: grpc.StatusCode) -> int:
    return EXIT_CODES.get(code, 1)


def flag_for(field: str, flags: Mapping[str, str]) -> str:
    """The CLI flag or argument that fills `field`: the longest mapped prefix, else the field itself."""
    for prefix in sorted(flags, key=len, reverse=True):
        if field == prefix or field.startswith(prefix + ".") or field.startswith(prefix + "["):
            return flags[prefix]
    return field


def fail(status: str, code: int, message: str, *, violations: list[dict] | None = None, hint: str = "") -> None:
    """Report one error (JSON on stdout under --json, red text on stderr otherwise) and exit with `code`."""
    if Output.as_json:
        error = {"status": status, "exit_code": code, "message": message}
        if violations:
            error["field_violations"] = violations
        if hint:
            error["hint"] = hint
        sys.stdout.write(json.dumps({"error": error}, indent=2) + "\n")
    else:
        errors.print(f"[red]error[/red] {escape(status)}: {escape(message)}", highlight=False, soft_wrap=True)
        if hint:
            errors.print(f"[yellow]hint[/yellow]: {escape(hint)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def fail_usage(message: str) -> None:
    fail("USAGE", USAGE_EXIT, message)


def fail_rpc(err: grpc.RpcError, *, flags: Mapping[str, str] | None = None, target: str = "") -> None:
    code = err.code()
    message = err.details() or code.name
    violations = [{"flag": flag_for(field, flags or {}), "field": field, "description": description}
                  for field, description in field_violations(err)]
    if violations:
        message = "; ".join(f"{v['flag']}: {v['description']}" for v in violations)
    hint = ""
    if code is grpc.StatusCode.UNIMPLEMENTED and re.search(r"method not found", message, re.I):
        hint = (f"{target or 'the target'} does not serve this call: is it a model service rather than the "
                "gateway? Point --target (or SYN_TARGET) at the gateway, 127.0.0.1:50050 by default.")
    fail(code.name, exit_code(code), message, violations=violations, hint=hint)


def emit_json(payload) -> None:
    if hasattr(payload, "DESCRIPTOR"):
        payload = json_format.MessageToDict(payload, preserving_proto_field_name=True)
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")
