from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelBackend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_BACKEND_UNSPECIFIED: _ClassVar[ModelBackend]
    MODEL_BACKEND_BUILTIN: _ClassVar[ModelBackend]
    MODEL_BACKEND_TRANSFORMERS: _ClassVar[ModelBackend]
    MODEL_BACKEND_PYTORCH_CHECKPOINT: _ClassVar[ModelBackend]
MODEL_BACKEND_UNSPECIFIED: ModelBackend
MODEL_BACKEND_BUILTIN: ModelBackend
MODEL_BACKEND_TRANSFORMERS: ModelBackend
MODEL_BACKEND_PYTORCH_CHECKPOINT: ModelBackend

class Image(_message.Message):
    __slots__ = ("data", "pixels")
    DATA_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    pixels: RawPixels
    def __init__(self, data: _Optional[bytes] = ..., pixels: _Optional[_Union[RawPixels, _Mapping]] = ...) -> None: ...

class RawPixels(_message.Message):
    __slots__ = ("data", "height_px", "width_px", "channels")
    DATA_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    height_px: int
    width_px: int
    channels: int
    def __init__(self, data: _Optional[bytes] = ..., height_px: _Optional[int] = ..., width_px: _Optional[int] = ..., channels: _Optional[int] = ...) -> None: ...

class Pcm(_message.Message):
    __slots__ = ("samples_f32le", "sample_rate_hz")
    SAMPLES_F32LE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    samples_f32le: bytes
    sample_rate_hz: int
    def __init__(self, samples_f32le: _Optional[bytes] = ..., sample_rate_hz: _Optional[int] = ...) -> None: ...

class AudioClip(_message.Message):
    __slots__ = ("encoded", "pcm")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    pcm: Pcm
    def __init__(self, encoded: _Optional[bytes] = ..., pcm: _Optional[_Union[Pcm, _Mapping]] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("shape", "data_f32le")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_F32LE_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    data_f32le: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., data_f32le: _Optional[bytes] = ...) -> None: ...

class BoundingBox(_message.Message):
    __slots__ = ("x_min_px", "y_min_px", "x_max_px", "y_max_px")
    X_MIN_PX_FIELD_NUMBER: _ClassVar[int]
    Y_MIN_PX_FIELD_NUMBER: _ClassVar[int]
    X_MAX_PX_FIELD_NUMBER: _ClassVar[int]
    Y_MAX_PX_FIELD_NUMBER: _ClassVar[int]
    x_min_px: float
    y_min_px: float
    x_max_px: float
    y_max_px: float
    def __init__(self, x_min_px: _Optional[float] = ..., y_min_px: _Optional[float] = ..., x_max_px: _Optional[float] = ..., y_max_px: _Optional[float] = ...) -> None: ...

class Heatmap(_message.Message):
    __slots__ = ("values", "image_width_px", "image_height_px")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    values: Tensor
    image_width_px: int
    image_height_px: int
    def __init__(self, values: _Optional[_Union[Tensor, _Mapping]] = ..., image_width_px: _Optional[int] = ..., image_height_px: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "task", "backend", "weights_sha256", "device", "is_default", "metrics", "parameter_count", "family", "source", "architecture", "notes")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    task: str
    backend: ModelBackend
    weights_sha256: str
    device: str
    is_default: bool
    metrics: _containers.ScalarMap[str, float]
    parameter_count: int
    family: str
    source: str
    architecture: str
    notes: str
    def __init__(self, name: _Optional[str] = ..., task: _Optional[str] = ..., backend: _Optional[_Union[ModelBackend, str]] = ..., weights_sha256: _Optional[str] = ..., device: _Optional[str] = ..., is_default: _Optional[bool] = ..., metrics: _Optional[_Mapping[str, float]] = ..., parameter_count: _Optional[int] = ..., family: _Optional[str] = ..., source: _Optional[str] = ..., architecture: _Optional[str] = ..., notes: _Optional[str] = ...) -> None: ...
