from synesthesia.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExplainMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPLAIN_METHOD_UNSPECIFIED: _ClassVar[ExplainMethod]
    EXPLAIN_METHOD_GRAD_CAM: _ClassVar[ExplainMethod]
    EXPLAIN_METHOD_GUIDED_GRAD_CAM: _ClassVar[ExplainMethod]
    EXPLAIN_METHOD_GUIDED_BACKPROP: _ClassVar[ExplainMethod]
    EXPLAIN_METHOD_GRADIENT: _ClassVar[ExplainMethod]
    EXPLAIN_METHOD_GRADIENT_SQUARED: _ClassVar[ExplainMethod]
    EXPLAIN_METHOD_OCCLUSION: _ClassVar[ExplainMethod]
    EXPLAIN_METHOD_CAM: _ClassVar[ExplainMethod]
    EXPLAIN_METHOD_ATTENTION: _ClassVar[ExplainMethod]
    EXPLAIN_METHOD_ATTENTION_ROLLOUT: _ClassVar[ExplainMethod]

class JudgeVisualization(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JUDGE_VISUALIZATION_UNSPECIFIED: _ClassVar[JudgeVisualization]
    JUDGE_VISUALIZATION_CLASS: _ClassVar[JudgeVisualization]
    JUDGE_VISUALIZATION_FIRST_LAYER_FILTERS: _ClassVar[JudgeVisualization]
    JUDGE_VISUALIZATION_TOP_PATCHES: _ClassVar[JudgeVisualization]

class MapMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MAP_METHOD_UNSPECIFIED: _ClassVar[MapMethod]
    MAP_METHOD_TSNE: _ClassVar[MapMethod]
    MAP_METHOD_UMAP: _ClassVar[MapMethod]
EXPLAIN_METHOD_UNSPECIFIED: ExplainMethod
EXPLAIN_METHOD_GRAD_CAM: ExplainMethod
EXPLAIN_METHOD_GUIDED_GRAD_CAM: ExplainMethod
EXPLAIN_METHOD_GUIDED_BACKPROP: ExplainMethod
EXPLAIN_METHOD_GRADIENT: ExplainMethod
EXPLAIN_METHOD_GRADIENT_SQUARED: ExplainMethod
EXPLAIN_METHOD_OCCLUSION: ExplainMethod
EXPLAIN_METHOD_CAM: ExplainMethod
EXPLAIN_METHOD_ATTENTION: ExplainMethod
EXPLAIN_METHOD_ATTENTION_ROLLOUT: ExplainMethod
JUDGE_VISUALIZATION_UNSPECIFIED: JudgeVisualization
JUDGE_VISUALIZATION_CLASS: JudgeVisualization
JUDGE_VISUALIZATION_FIRST_LAYER_FILTERS: JudgeVisualization
JUDGE_VISUALIZATION_TOP_PATCHES: JudgeVisualization
MAP_METHOD_UNSPECIFIED: MapMethod
MAP_METHOD_TSNE: MapMethod
MAP_METHOD_UMAP: MapMethod

class ExplainOptions(_message.Message):
    __slots__ = ("occlusion_window_px", "occlusion_stride_px")
    OCCLUSION_WINDOW_PX_FIELD_NUMBER: _ClassVar[int]
    OCCLUSION_STRIDE_PX_FIELD_NUMBER: _ClassVar[int]
    occlusion_window_px: int
    occlusion_stride_px: int
    def __init__(self, occlusion_window_px: _Optional[int] = ..., occlusion_stride_px: _Optional[int] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("method", "heatmap", "overlay_png", "compute_seconds")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_PNG_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    method: ExplainMethod
    heatmap: _common_pb2.Heatmap
    overlay_png: bytes
    compute_seconds: float
    def __init__(self, method: _Optional[_Union[ExplainMethod, str]] = ..., heatmap: _Optional[_Union[_common_pb2.Heatmap, _Mapping]] = ..., overlay_png: _Optional[bytes] = ..., compute_seconds: _Optional[float] = ...) -> None: ...

class ExplainCaptionRequest(_message.Message):
    __slots__ = ("image", "caption", "word_index", "methods", "options", "model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    WORD_INDEX_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    caption: str
    word_index: int
    methods: _containers.RepeatedScalarFieldContainer[ExplainMethod]
    options: ExplainOptions
    model: str
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., caption: _Optional[str] = ..., word_index: _Optional[int] = ..., methods: _Optional[_Iterable[_Union[ExplainMethod, str]]] = ..., options: _Optional[_Union[ExplainOptions, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class ExplainCaptionResponse(_message.Message):
    __slots__ = ("caption", "word", "log_probability", "explanations", "model")
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    WORD_FIELD_NUMBER: _ClassVar[int]
    LOG_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    caption: str
    word: str
    log_probability: float
    explanations: _containers.RepeatedCompositeFieldContainer[Explanation]
    model: str
    def __init__(self, caption: _Optional[str] = ..., word: _Optional[str] = ..., log_probability: _Optional[float] = ..., explanations: _Optional[_Iterable[_Union[Explanation, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class ExplainJudgeRequest(_message.Message):
    __slots__ = ("image", "head", "class_name", "methods", "options")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    head: str
    class_name: str
    methods: _containers.RepeatedScalarFieldContainer[ExplainMethod]
    options: ExplainOptions
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., head: _Optional[str] = ..., class_name: _Optional[str] = ..., methods: _Optional[_Iterable[_Union[ExplainMethod, str]]] = ..., options: _Optional[_Union[ExplainOptions, _Mapping]] = ...) -> None: ...

class JudgePrediction(_message.Message):
    __slots__ = ("head", "class_name", "probability")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    head: str
    class_name: str
    probability: float
    def __init__(self, head: _Optional[str] = ..., class_name: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class ExplainJudgeResponse(_message.Message):
    __slots__ = ("predictions", "head", "class_name", "explanations")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[JudgePrediction]
    head: str
    class_name: str
    explanations: _containers.RepeatedCompositeFieldContainer[Explanation]
    def __init__(self, predictions: _Optional[_Iterable[_Union[JudgePrediction, _Mapping]]] = ..., head: _Optional[str] = ..., class_name: _Optional[str] = ..., explanations: _Optional[_Iterable[_Union[Explanation, _Mapping]]] = ...) -> None: ...

class VisualizeJudgeRequest(_message.Message):
    __slots__ = ("kind", "head", "class_name", "steps", "seed", "layer", "channel", "scene_count", "top_k")
    KIND_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SCENE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    kind: JudgeVisualization
    head: str
    class_name: str
    steps: int
    seed: int
    layer: str
    channel: int
    scene_count: int
    top_k: int
    def __init__(self, kind: _Optional[_Union[JudgeVisualization, str]] = ..., head: _Optional[str] = ..., class_name: _Optional[str] = ..., steps: _Optional[int] = ..., seed: _Optional[int] = ..., layer: _Optional[str] = ..., channel: _Optional[int] = ..., scene_count: _Optional[int] = ..., top_k: _Optional[int] = ...) -> None: ...

class ActivatingPatch(_message.Message):
    __slots__ = ("patch_png", "activation", "scene_seed", "box")
    PATCH_PNG_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    SCENE_SEED_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    patch_png: bytes
    activation: float
    scene_seed: int
    box: _common_pb2.BoundingBox
    def __init__(self, patch_png: _Optional[bytes] = ..., activation: _Optional[float] = ..., scene_seed: _Optional[int] = ..., box: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ...) -> None: ...

class VisualizeJudgeResponse(_message.Message):
    __slots__ = ("picture_png", "values", "scores", "patches", "layers")
    PICTURE_PNG_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    PATCHES_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    picture_png: bytes
    values: _common_pb2.Tensor
    scores: _common_pb2.Tensor
    patches: _containers.RepeatedCompositeFieldContainer[ActivatingPatch]
    layers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, picture_png: _Optional[bytes] = ..., values: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., scores: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., patches: _Optional[_Iterable[_Union[ActivatingPatch, _Mapping]]] = ..., layers: _Optional[_Iterable[str]] = ...) -> None: ...

class ExplainMatchRequest(_message.Message):
    __slots__ = ("image", "text", "methods", "options", "model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    text: str
    methods: _containers.RepeatedScalarFieldContainer[ExplainMethod]
    options: ExplainOptions
    model: str
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., text: _Optional[str] = ..., methods: _Optional[_Iterable[_Union[ExplainMethod, str]]] = ..., options: _Optional[_Union[ExplainOptions, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class ExplainMatchResponse(_message.Message):
    __slots__ = ("similarity", "explanations", "model")
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    similarity: float
    explanations: _containers.RepeatedCompositeFieldContainer[Explanation]
    model: str
    def __init__(self, similarity: _Optional[float] = ..., explanations: _Optional[_Iterable[_Union[Explanation, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class ItemNeighborsRequest(_message.Message):
    __slots__ = ("collection", "id", "top_k")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    collection: str
    id: str
    top_k: int
    def __init__(self, collection: _Optional[str] = ..., id: _Optional[str] = ..., top_k: _Optional[int] = ...) -> None: ...

class ItemNeighborsResponse(_message.Message):
    __slots__ = ("neighbors",)
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    neighbors: _containers.RepeatedCompositeFieldContainer[Neighbor]
    def __init__(self, neighbors: _Optional[_Iterable[_Union[Neighbor, _Mapping]]] = ...) -> None: ...

class Neighbor(_message.Message):
    __slots__ = ("id", "score", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class MapCollectionRequest(_message.Message):
    __slots__ = ("collection", "max_items", "perplexity", "label_key", "seed", "method", "umap_neighbors")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    LABEL_KEY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    UMAP_NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    max_items: int
    perplexity: float
    label_key: str
    seed: int
    method: MapMethod
    umap_neighbors: int
    def __init__(self, collection: _Optional[str] = ..., max_items: _Optional[int] = ..., perplexity: _Optional[float] = ..., label_key: _Optional[str] = ..., seed: _Optional[int] = ..., method: _Optional[_Union[MapMethod, str]] = ..., umap_neighbors: _Optional[int] = ...) -> None: ...

class MapPoint(_message.Message):
    __slots__ = ("id", "x", "y", "label")
    ID_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    id: str
    x: float
    y: float
    label: str
    def __init__(self, id: _Optional[str] = ..., x: _Optional[float] = ..., y: _Optional[float] = ..., label: _Optional[str] = ...) -> None: ...

class MapCollectionResponse(_message.Message):
    __slots__ = ("points", "picture_png", "method")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    PICTURE_PNG_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[MapPoint]
    picture_png: bytes
    method: str
    def __init__(self, points: _Optional[_Iterable[_Union[MapPoint, _Mapping]]] = ..., picture_png: _Optional[bytes] = ..., method: _Optional[str] = ...) -> None: ...

class ExplainLocalizationRequest(_message.Message):
    __slots__ = ("image", "audio", "methods", "options", "model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.Image
    audio: _common_pb2.AudioClip
    methods: _containers.RepeatedScalarFieldContainer[ExplainMethod]
    options: ExplainOptions
    model: str
    def __init__(self, image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., audio: _Optional[_Union[_common_pb2.AudioClip, _Mapping]] = ..., methods: _Optional[_Iterable[_Union[ExplainMethod, str]]] = ..., options: _Optional[_Union[ExplainOptions, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...

class ExplainLocalizationResponse(_message.Message):
    __slots__ = ("score", "explanations", "model")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    score: float
    explanations: _containers.RepeatedCompositeFieldContainer[Explanation]
    model: str
    def __init__(self, score: _Optional[float] = ..., explanations: _Optional[_Iterable[_Union[Explanation, _Mapping]]] = ..., model: _Optional[str] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("caption", "judge", "visualize_judge", "match", "neighbors", "map_collection", "localization")
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    VISUALIZE_JUDGE_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    MAP_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    LOCALIZATION_FIELD_NUMBER: _ClassVar[int]
    caption: ExplainCaptionRequest
    judge: ExplainJudgeRequest
    visualize_judge: VisualizeJudgeRequest
    match: ExplainMatchRequest
    neighbors: ItemNeighborsRequest
    map_collection: MapCollectionRequest
    localization: ExplainLocalizationRequest
    def __init__(self, caption: _Optional[_Union[ExplainCaptionRequest, _Mapping]] = ..., judge: _Optional[_Union[ExplainJudgeRequest, _Mapping]] = ..., visualize_judge: _Optional[_Union[VisualizeJudgeRequest, _Mapping]] = ..., match: _Optional[_Union[ExplainMatchRequest, _Mapping]] = ..., neighbors: _Optional[_Union[ItemNeighborsRequest, _Mapping]] = ..., map_collection: _Optional[_Union[MapCollectionRequest, _Mapping]] = ..., localization: _Optional[_Union[ExplainLocalizationRequest, _Mapping]] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("caption", "judge", "visualize_judge", "match", "neighbors", "map_collection", "localization")
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    VISUALIZE_JUDGE_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    MAP_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    LOCALIZATION_FIELD_NUMBER: _ClassVar[int]
    caption: ExplainCaptionResponse
    judge: ExplainJudgeResponse
    visualize_judge: VisualizeJudgeResponse
    match: ExplainMatchResponse
    neighbors: ItemNeighborsResponse
    map_collection: MapCollectionResponse
    localization: ExplainLocalizationResponse
    def __init__(self, caption: _Optional[_Union[ExplainCaptionResponse, _Mapping]] = ..., judge: _Optional[_Union[ExplainJudgeResponse, _Mapping]] = ..., visualize_judge: _Optional[_Union[VisualizeJudgeResponse, _Mapping]] = ..., match: _Optional[_Union[ExplainMatchResponse, _Mapping]] = ..., neighbors: _Optional[_Union[ItemNeighborsResponse, _Mapping]] = ..., map_collection: _Optional[_Union[MapCollectionResponse, _Mapping]] = ..., localization: _Optional[_Union[ExplainLocalizationResponse, _Mapping]] = ...) -> None: ...
