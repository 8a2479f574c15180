"""Packing numpy arrays into the `Tensor` message and back (float32, little-endian)."""

from __future__ import annotations

import numpy as np

from synesthesia.v1 import common_pb2

_F32LE = np.dtype("<f4")


def to_tensor(array: np.ndarray) -> common_pb2.Tensor:
    """Pack any numeric array as a float32 little-endian Tensor message."""
    arr = np.ascontiguousarray(np.asarray(array), dtype=_F32LE)
    return common_pb2.Tensor(shape=list(arr.shape), data_f32le=arr.tobytes())


def from_tensor(tensor: common_pb2.Tensor) -> np.ndarray:
    """Unpack a Tensor message; raises ValueError when bytes and shape disagree."""
    shape = tuple(int(d) for d in tensor.shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    expected = int(np.prod(shape, dtype=np.int64)) * 4
    if len(tensor.data_f32le) != expected:
        raise ValueError(f"shape {shape} needs {expected} bytes, got {len(tensor.data_f32le)}")
    return np.frombuffer(tensor.data_f32le, dtype=_F32LE).reshape(shape).astype(np.float32)


def pcm_to_array(samples_f32le: bytes) -> np.ndarray:
    """Decode packed PCM samples; raises ValueError for a ragged byte count."""
    if len(samples_f32le) % 4:
        raise ValueError(f"{len(samples_f32le)} bytes is not a whole number of float32 samples")
    return np.frombuffer(samples_f32le, dtype=_F32LE).astype(np.float32)


def array_to_pcm(samples: np.ndarray) -> bytes:
    """Pack mono samples as float32 little-endian bytes."""
    return np.ascontiguousarray(np.asarray(samples), dtype=_F32LE).tobytes()
