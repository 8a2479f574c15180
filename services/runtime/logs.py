"""Logging for every service: plain lines or JSON objects (SYN_LOG_FORMAT), one access line per call.

The access line (logger `synesthesia.access`) carries request id, method,
model, status, latency, batch size and peer; with JSON each is its own key,
so `jq 'select(.request_id == "...")'` finds one call's lines in every
service (the gateway forwards the id upstream).
"""

from __future__ import annotations

import json
import logging
import time

from .calls import REQUEST_ID, Call

ACCESS = logging.getLogger("synesthesia.access")
# Probes and tooling poll constantly; their lines go to DEBUG so INFO shows real traffic.
_QUIET_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        elif REQUEST_ID.get():
            out["request_id"] = REQUEST_ID.get()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(service: str, level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def log_call(call: Call, status: str, seconds: float, trace_id: str = "") -> None:
    level = logging.DEBUG if call.method.startswith(_QUIET_PREFIXES) else logging.INFO
    if not ACCESS.isEnabledFor(level):
        return
    fields = {"request_id": call.request_id, "method": call.method, "model": call.model, "status": status,
              "latency_ms": round(seconds * 1000.0, 3), "batch_size": call.batch_size, "peer": call.peer}
    if trace_id:
        fields["trace_id"] = trace_id
    text = " ".join(f"{key}={value if value not in ('', None) else '-'}" for key, value in fields.items())
    # The record is made directly: Logger.log would walk the stack for the caller's file and line
    # (findCaller) on every call, which no formatter here prints; filters and handlers still apply.
    ACCESS.handle(ACCESS.makeRecord(ACCESS.name, level, __file__, 0, text, (), None, extra={"fields": fields}))
