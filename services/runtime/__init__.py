"""The shared service runtime: every service is a servicer handed to `run_service`.

See services/runtime/README.md for what it provides and how a service uses it.
"""

from .audio import AudioLimits, Clip, ClipReader
from .batching import DynamicBatcher
from .device import describe as describe_device
from .device import select_device
from .errors import (
    ServiceError,
    cancelled,
    deadline_exceeded,
    failed_precondition,
    invalid_argument,
    not_found,
    resource_exhausted,
    quoted,
    scrub,
    unavailable,
)
from .calls import CURRENT, REQUEST_ID, Call, check_call, in_thread, note_model
from .images import (
    FIT_FOR_MODELS_PX,
    INLINE_DECODE_BYTES,
    ImageLimits,
    decode_image,
    decodes_inline,
    encode_png,
    image_from_message,
    source_size,
    to_rgb,
)
from .model_process import SET_IN_BATCH
from .models import numeric_metrics
from .registry import ModelRegistry, ServedModel
from .server import ServiceHost, run_service, serve
from .settings import REPO_ROOT, Settings, SettingsError, read_settings

__all__ = [
    "AudioLimits",
    "CURRENT",
    "Call",
    "cancelled",
    "check_call",
    "deadline_exceeded",
    "in_thread",
    "quoted",
    "scrub",
    "source_size",
    "DynamicBatcher",
    "FIT_FOR_MODELS_PX",
    "ImageLimits",
    "REPO_ROOT",
    "REQUEST_ID",
    "SET_IN_BATCH",
    "ServiceError",
    "ServedModel",
    "ServiceHost",
    "Settings",
    "SettingsError",
    "decode_image",
    "image_from_message",
    "decodes_inline",
    "INLINE_DECODE_BYTES",
    "describe_device",
    "encode_png",
    "failed_precondition",
    "invalid_argument",
    "not_found",
    "note_model",
    "numeric_metrics",
    "read_settings",
    "resource_exhausted",
    "run_service",
    "select_device",
    "serve",
    "to_rgb",
    "unavailable",
]
