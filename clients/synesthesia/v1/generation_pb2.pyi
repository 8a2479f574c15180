from synesthesia.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TextToImageRequest(_message.Message):
    __slots__ = ("prompt", "image_count", "seed", "model")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    image_count: int
    seed: int
    model: str
    def __init__(self, prompt: _Optional[str] = ..., image_count: _Optional[int] = ..., seed: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class TextToImageResponse(_message.Message):
    __slots__ = ("images", "seed", "unknown_words", "model")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_WORDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    seed: int
    unknown_words: _containers.RepeatedScalarFieldContainer[str]
    model: str
    def __init__(self, images: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ..., seed: _Optional[int] = ..., unknown_words: _Optional[_Iterable[str]] = ..., model: _Optional[str] = ...) -> None: ...

class ImageToImageRequest(_message.Message):
    __slots__ = ("image", "model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    model: str
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class ImageToImageResponse(_message.Message):
    __slots__ = ("image", "model", "warnings")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    model: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., model: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class ListGenerationModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListGenerationModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_common_pb2.ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[_common_pb2.ModelInfo, _Mapping]]] = ...) -> None: ...
