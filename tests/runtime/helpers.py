"""Small helpers shared by the runtime tests."""

from __future__ import annotations

import io
import struct
import time
import urllib.request
import zlib

import grpc
import numpy as np
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from synesthesia.v1 import captioning_pb2, captioning_pb2_grpc, common_pb2

TOY = "tests.runtime.toy_service"


def caption(target: str, data: bytes, timeout: float = 10.0, **options) -> captioning_pb2.CaptionResponse:
    """One Caption call to a (toy) captioning server on its own channel; `options` are CaptionOptions."""
    with grpc.insecure_channel(target) as channel:
        return captioning_pb2_grpc.CaptioningStub(channel).Caption(
            captioning_pb2.CaptionRequest(
                image=common_pb2.Image(data=data), options=captioning_pb2.CaptionOptions(**options)
            ),
            timeout=timeout,
        )


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def solid_png(value: int, width: int = 16, height: int = 16) -> bytes:
    return png_bytes(np.full((height, width, 3), value, np.uint8))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims width x height pixels."""
    data = bytearray(solid_png(0, 1, 1))
    ihdr_start = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr_start:ihdr_start + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:ihdr_start + 13])) & 0xFFFFFFFF
    data[ihdr_start + 13:ihdr_start + 17] = struct.pack(">I", crc)
    return bytes(data)


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """The BadRequest field violations carried by an error's rich status."""
    status = rpc_status.from_call(error)
    out = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.extend((v.field, v.description) for v in bad.field_violations)
    return out


def metrics_text(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def in_flight(metrics_port: int) -> float:
    """syn_rpcs_in_flight of a server: lets a test act once calls have really arrived (no sleeps)."""
    return sum(float(line.split()[-1]) for line in metrics_text(metrics_port).splitlines()
               if line.startswith("syn_rpcs_in_flight"))


def wait_until(condition, timeout_s: float = 60.0, what="condition") -> None:
    """Poll `condition` until true; `what` names it, or is a callable that describes the state on timeout."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.05)
