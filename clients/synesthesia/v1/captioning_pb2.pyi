from synesthesia.v1 import common_pb2 as _common_pb2
from synesthesia.v1 import explain_pb2 as _explain_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CaptionOptions(_message.Message):
    __slots__ = ("beam_size", "max_length_words", "model")
    BEAM_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_WORDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    beam_size: int
    max_length_words: int
    model: str
    def __init__(self, beam_size: _Optional[int] = ..., max_length_words: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class CaptionWord(_message.Message):
    __slots__ = ("text", "log_probability", "attention")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LOG_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_FIELD_NUMBER: _ClassVar[int]
    text: str
    log_probability: float
    attention: _common_pb2.Heatmap
    def __init__(self, text: _Optional[str] = ..., log_probability: _Optional[float] = ..., attention: _Optional[_Union[_common_pb2.Heatmap, _Mapping]] = ...) -> None: ...

class CaptionRequest(_message.Message):
    __slots__ = ("image", "options", "include_attention")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ATTENTION_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    options: CaptionOptions
    include_attention: bool
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., options: _Optional[_Union[CaptionOptions, _Mapping]] = ..., include_attention: _Optional[bool] = ...) -> None: ...

class CaptionResponse(_message.Message):
    __slots__ = ("caption", "log_probability", "words", "model", "warnings")
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    LOG_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    caption: str
    log_probability: float
    words: _containers.RepeatedCompositeFieldContainer[CaptionWord]
    model: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, caption: _Optional[str] = ..., log_probability: _Optional[float] = ..., words: _Optional[_Iterable[_Union[CaptionWord, _Mapping]]] = ..., model: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamCaptionRequest(_message.Message):
    __slots__ = ("image", "options", "include_attention")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ATTENTION_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    options: CaptionOptions
    include_attention: bool
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., options: _Optional[_Union[CaptionOptions, _Mapping]] = ..., include_attention: _Optional[bool] = ...) -> None: ...

class StreamCaptionResponse(_message.Message):
    __slots__ = ("word", "index", "is_final", "warnings")
    WORD_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    word: CaptionWord
    index: int
    is_final: bool
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, word: _Optional[_Union[CaptionWord, _Mapping]] = ..., index: _Optional[int] = ..., is_final: _Optional[bool] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class ListCaptioningModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCaptioningModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_common_pb2.ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[_common_pb2.ModelInfo, _Mapping]]] = ...) -> None: ...
