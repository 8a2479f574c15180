"""The shared service runtime: every service is a servicer handed to `run_service`.

See services/runtime/README.md for what it provides and how a service uses it.
"""

from .batching import DynamicBatcher
from .device import describe as describe_device
from .device import select_device
from .errors import (
    ServiceError,
    failed_precondition,
    invalid_argument,
    not_found,
    resource_exhausted,
    unavailable,
)
from .calls import REQUEST_ID, note_model
from .images import INLINE_DECODE_BYTES, decode_image, decodes_inline, encode_png, image_from_message, to_rgb
from .models import backend_infos, model_info, numeric_metrics
from .server import ServiceHost, run_service, serve
from .settings import REPO_ROOT, Settings, SettingsError, read_settings

__all__ = [
    "DynamicBatcher",
    "REPO_ROOT",
    "REQUEST_ID",
    "ServiceError",
    "ServiceHost",
    "Settings",
    "SettingsError",
    "backend_infos",
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
    "model_info",
    "numeric_metrics",
    "read_settings",
    "resource_exhausted",
    "run_service",
    "select_device",
    "serve",
    "to_rgb",
    "unavailable",
]
