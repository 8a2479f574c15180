from synesthesia.v1 import common_pb2 as _common_pb2
from synesthesia.v1 import explain_pb2 as _explain_pb2
from synesthesia.v1 import captioning_pb2 as _captioning_pb2
from synesthesia.v1 import embedding_pb2 as _embedding_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StepState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_STATE_UNSPECIFIED: _ClassVar[StepState]
    STEP_STATE_STARTED: _ClassVar[StepState]
    STEP_STATE_FINISHED: _ClassVar[StepState]
    STEP_STATE_FAILED: _ClassVar[StepState]
    STEP_STATE_SKIPPED: _ClassVar[StepState]

class UpstreamState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPSTREAM_STATE_UNSPECIFIED: _ClassVar[UpstreamState]
    UPSTREAM_STATE_SERVING: _ClassVar[UpstreamState]
    UPSTREAM_STATE_NOT_SERVING: _ClassVar[UpstreamState]
    UPSTREAM_STATE_UNREACHABLE: _ClassVar[UpstreamState]
STEP_STATE_UNSPECIFIED: StepState
STEP_STATE_STARTED: StepState
STEP_STATE_FINISHED: StepState
STEP_STATE_FAILED: StepState
STEP_STATE_SKIPPED: StepState
UPSTREAM_STATE_UNSPECIFIED: UpstreamState
UPSTREAM_STATE_SERVING: UpstreamState
UPSTREAM_STATE_NOT_SERVING: UpstreamState
UPSTREAM_STATE_UNREACHABLE: UpstreamState

class DescribeRequest(_message.Message):
    __slots__ = ("image", "collection", "top_k", "beam_size", "model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    BEAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    collection: str
    top_k: int
    beam_size: int
    model: str
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., collection: _Optional[str] = ..., top_k: _Optional[int] = ..., beam_size: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("caption", "neighbours")
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOURS_FIELD_NUMBER: _ClassVar[int]
    caption: _captioning_pb2.CaptionResponse
    neighbours: _containers.RepeatedCompositeFieldContainer[_embedding_pb2.SearchHit]
    def __init__(self, caption: _Optional[_Union[_captioning_pb2.CaptionResponse, _Mapping]] = ..., neighbours: _Optional[_Iterable[_Union[_embedding_pb2.SearchHit, _Mapping]]] = ...) -> None: ...

class ImagineRequest(_message.Message):
    __slots__ = ("prompt", "image_count", "seed", "model", "captioning_model", "embedding_model")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CAPTIONING_MODEL_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    image_count: int
    seed: int
    model: str
    captioning_model: str
    embedding_model: str
    def __init__(self, prompt: _Optional[str] = ..., image_count: _Optional[int] = ..., seed: _Optional[int] = ..., model: _Optional[str] = ..., captioning_model: _Optional[str] = ..., embedding_model: _Optional[str] = ...) -> None: ...

class ImaginedImage(_message.Message):
    __slots__ = ("image", "caption", "prompt_agreement")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    caption: str
    prompt_agreement: float
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., caption: _Optional[str] = ..., prompt_agreement: _Optional[float] = ...) -> None: ...

class ImagineResponse(_message.Message):
    __slots__ = ("images", "seed", "unknown_words", "warnings", "model")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_WORDS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[ImaginedImage]
    seed: int
    unknown_words: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    model: str
    def __init__(self, images: _Optional[_Iterable[_Union[ImaginedImage, _Mapping]]] = ..., seed: _Optional[int] = ..., unknown_words: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ..., model: _Optional[str] = ...) -> None: ...

class ListenRequest(_message.Message):
    __slots__ = ("image", "audio", "model", "captioning_model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CAPTIONING_MODEL_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    audio: _common_pb2.AudioClip
    model: str
    captioning_model: str
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., audio: _Optional[_Union[_common_pb2.AudioClip, _Mapping]] = ..., model: _Optional[str] = ..., captioning_model: _Optional[str] = ...) -> None: ...

class ListenResponse(_message.Message):
    __slots__ = ("heatmap", "box", "caption", "summary", "peak_score", "clear_source", "warnings", "model")
    HEATMAP_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PEAK_SCORE_FIELD_NUMBER: _ClassVar[int]
    CLEAR_SOURCE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    heatmap: _common_pb2.Heatmap
    box: _common_pb2.BoundingBox
    caption: str
    summary: str
    peak_score: float
    clear_source: bool
    warnings: _containers.RepeatedScalarFieldContainer[str]
    model: str
    def __init__(self, heatmap: _Optional[_Union[_common_pb2.Heatmap, _Mapping]] = ..., box: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., caption: _Optional[str] = ..., summary: _Optional[str] = ..., peak_score: _Optional[float] = ..., clear_source: _Optional[bool] = ..., warnings: _Optional[_Iterable[str]] = ..., model: _Optional[str] = ...) -> None: ...

class TranslateRequest(_message.Message):
    __slots__ = ("image", "model", "captioning_model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CAPTIONING_MODEL_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    model: str
    captioning_model: str
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., model: _Optional[str] = ..., captioning_model: _Optional[str] = ...) -> None: ...

class TranslateResponse(_message.Message):
    __slots__ = ("image", "caption", "warnings", "model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    caption: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    model: str
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., caption: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., model: _Optional[str] = ...) -> None: ...

class RunPipelineRequest(_message.Message):
    __slots__ = ("spec", "inputs")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    SPEC_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    spec: str
    inputs: _containers.ScalarMap[str, bytes]
    def __init__(self, spec: _Optional[str] = ..., inputs: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class RunPipelineResponse(_message.Message):
    __slots__ = ("step", "state", "elapsed_ms", "output_json", "error_code", "error_message")
    STEP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    step: str
    state: StepState
    elapsed_ms: float
    output_json: str
    error_code: str
    error_message: str
    def __init__(self, step: _Optional[str] = ..., state: _Optional[_Union[StepState, str]] = ..., elapsed_ms: _Optional[float] = ..., output_json: _Optional[str] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class CheckUpstreamsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpstreamHealth(_message.Message):
    __slots__ = ("name", "service", "target", "state", "detail", "latency_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    service: str
    target: str
    state: UpstreamState
    detail: str
    latency_ms: float
    def __init__(self, name: _Optional[str] = ..., service: _Optional[str] = ..., target: _Optional[str] = ..., state: _Optional[_Union[UpstreamState, str]] = ..., detail: _Optional[str] = ..., latency_ms: _Optional[float] = ...) -> None: ...

class CheckUpstreamsResponse(_message.Message):
    __slots__ = ("upstreams",)
    UPSTREAMS_FIELD_NUMBER: _ClassVar[int]
    upstreams: _containers.RepeatedCompositeFieldContainer[UpstreamHealth]
    def __init__(self, upstreams: _Optional[_Iterable[_Union[UpstreamHealth, _Mapping]]] = ...) -> None: ...
