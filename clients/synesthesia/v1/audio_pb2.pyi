from synesthesia.v1 import common_pb2 as _common_pb2
from synesthesia.v1 import explain_pb2 as _explain_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATURE_KIND_UNSPECIFIED: _ClassVar[FeatureKind]
    FEATURE_KIND_MAGNITUDE: _ClassVar[FeatureKind]
    FEATURE_KIND_POWER: _ClassVar[FeatureKind]
    FEATURE_KIND_LOG_MEL: _ClassVar[FeatureKind]

class WindowKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WINDOW_KIND_UNSPECIFIED: _ClassVar[WindowKind]
    WINDOW_KIND_HAMMING: _ClassVar[WindowKind]
    WINDOW_KIND_HANN: _ClassVar[WindowKind]
    WINDOW_KIND_RECTANGULAR: _ClassVar[WindowKind]
FEATURE_KIND_UNSPECIFIED: FeatureKind
FEATURE_KIND_MAGNITUDE: FeatureKind
FEATURE_KIND_POWER: FeatureKind
FEATURE_KIND_LOG_MEL: FeatureKind
WINDOW_KIND_UNSPECIFIED: WindowKind
WINDOW_KIND_HAMMING: WindowKind
WINDOW_KIND_HANN: WindowKind
WINDOW_KIND_RECTANGULAR: WindowKind

class FeatureOptions(_message.Message):
    __slots__ = ("kind", "n_fft", "hop_length_samples", "window", "n_mels", "target_sample_rate_hz", "center")
    KIND_FIELD_NUMBER: _ClassVar[int]
    N_FFT_FIELD_NUMBER: _ClassVar[int]
    HOP_LENGTH_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    N_MELS_FIELD_NUMBER: _ClassVar[int]
    TARGET_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    CENTER_FIELD_NUMBER: _ClassVar[int]
    kind: FeatureKind
    n_fft: int
    hop_length_samples: int
    window: WindowKind
    n_mels: int
    target_sample_rate_hz: int
    center: bool
    def __init__(self, kind: _Optional[_Union[FeatureKind, str]] = ..., n_fft: _Optional[int] = ..., hop_length_samples: _Optional[int] = ..., window: _Optional[_Union[WindowKind, str]] = ..., n_mels: _Optional[int] = ..., target_sample_rate_hz: _Optional[int] = ..., center: _Optional[bool] = ...) -> None: ...

class ExtractFeaturesRequest(_message.Message):
    __slots__ = ("audio", "options")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    audio: _common_pb2.AudioClip
    options: FeatureOptions
    def __init__(self, audio: _Optional[_Union[_common_pb2.AudioClip, _Mapping]] = ..., options: _Optional[_Union[FeatureOptions, _Mapping]] = ...) -> None: ...

class ExtractFeaturesResponse(_message.Message):
    __slots__ = ("features", "frame_rate_hz", "frequencies_hz", "sample_rate_hz", "sample_count")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    FRAME_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    FREQUENCIES_HZ_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    features: _common_pb2.Tensor
    frame_rate_hz: float
    frequencies_hz: _containers.RepeatedScalarFieldContainer[float]
    sample_rate_hz: int
    sample_count: int
    def __init__(self, features: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., frame_rate_hz: _Optional[float] = ..., frequencies_hz: _Optional[_Iterable[float]] = ..., sample_rate_hz: _Optional[int] = ..., sample_count: _Optional[int] = ...) -> None: ...

class StreamFeaturesRequest(_message.Message):
    __slots__ = ("options", "chunk")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    options: FeatureOptions
    chunk: _common_pb2.Pcm
    def __init__(self, options: _Optional[_Union[FeatureOptions, _Mapping]] = ..., chunk: _Optional[_Union[_common_pb2.Pcm, _Mapping]] = ...) -> None: ...

class StreamFeaturesResponse(_message.Message):
    __slots__ = ("result", "chunk_count")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    result: ExtractFeaturesResponse
    chunk_count: int
    def __init__(self, result: _Optional[_Union[ExtractFeaturesResponse, _Mapping]] = ..., chunk_count: _Optional[int] = ...) -> None: ...

class LocalizeRequest(_message.Message):
    __slots__ = ("image", "audio", "model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    audio: _common_pb2.AudioClip
    model: str
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., audio: _Optional[_Union[_common_pb2.AudioClip, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class LocalizeResponse(_message.Message):
    __slots__ = ("heatmap", "box", "peak_score", "peak_to_mean_ratio", "model", "clear_source", "warnings")
    HEATMAP_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    PEAK_SCORE_FIELD_NUMBER: _ClassVar[int]
    PEAK_TO_MEAN_RATIO_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CLEAR_SOURCE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    heatmap: _common_pb2.Heatmap
    box: _common_pb2.BoundingBox
    peak_score: float
    peak_to_mean_ratio: float
    model: str
    clear_source: bool
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, heatmap: _Optional[_Union[_common_pb2.Heatmap, _Mapping]] = ..., box: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., peak_score: _Optional[float] = ..., peak_to_mean_ratio: _Optional[float] = ..., model: _Optional[str] = ..., clear_source: _Optional[bool] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class ListAudioModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAudioModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_common_pb2.ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[_common_pb2.ModelInfo, _Mapping]]] = ...) -> None: ...
