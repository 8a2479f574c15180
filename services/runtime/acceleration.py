"""Device speed-ups a service can switch on per deployment, each off by default.

| variable | values | what it does |
| --- | --- | --- |
| `SYN_AUTOCAST` | off (default), bf16, fp16 | runs the forward pass under `torch.autocast` in that dtype (matmuls and convolutions in half precision, reductions and softmax in float32) |
| `SYN_CHANNELS_LAST` | auto (default), 1, 0 | the served copy of a convolutional network with each BatchNorm folded into the convolution before it, its weights and input batches in NHWC (`torch.channels_last`); auto: on a CPU, not on a GPU |
| `SYN_TORCH_COMPILE` | off (default), default, reduce-overhead, max-autotune | `torch.compile` of the convolutional image encoders with that mode; `reduce-overhead` captures CUDA graphs on a GPU |

Autocast and compile pay on a GPU (tensor cores, fewer kernel launches). On a CPU autocast costs
(bf16 matmuls without AMX) and `torch.compile` pays some (+12-16% at concurrency 32 on the 2-core
machine) but needs a C++ compiler at run time and 10-30 s more start-up, so both stay off by default.
Each switch is tested for equivalence on CPU against float32 eager (tests/runtime/test_acceleration.py
states the tolerances). A compiled function is warmed at every batch size the batcher can form (`warm`).

The NHWC layout is on by default on a CPU because it pays there without anything else installed:
the built-in embedding's image encoder, batch of 16, one thread, 1.25 ms per picture eager, 1.12 in
NHWC, 0.95 in NHWC with BatchNorm folded (folding alone: no change; a BatchNorm over NHWC costs more
than the NHWC convolutions save, so the two go together). Outputs change by float rounding only
(largest embedding difference 7e-8). It applies to a served copy: explanations read the loaded
network's own layers (first-layer filters, Grad-CAM's block, the sanity check's randomised layers).
On a GPU auto keeps NCHW: no GPU was lent to measure it; 1 turns it on there.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class Acceleration:
    autocast: str = "off"
    # None: auto, decided per device by `on`.
    channels_last: bool | None = None
    compile: str = "off"

    @classmethod
    def from_settings(cls, settings) -> "Acceleration":
        """Read SYN_AUTOCAST, SYN_CHANNELS_LAST and SYN_TORCH_COMPILE; a bad value stops the service."""
        autocast = settings.env("AUTOCAST", "off").strip().lower() or "off"
        if autocast not in AUTOCAST_DTYPES:
            raise SystemExit(f"SYN_AUTOCAST={autocast!r}: use one of {', '.join(AUTOCAST_DTYPES)}")
        channels_last = settings.env("CHANNELS_LAST", "auto").strip().lower() or "auto"
        if channels_last not in ("auto", "0", "1", "true", "false"):
            raise SystemExit(f"SYN_CHANNELS_LAST={channels_last!r}: use auto, 0 or 1")
        compile_mode = settings.env("TORCH_COMPILE", "off").strip().lower() or "off"
        if compile_mode not in COMPILE_MODES:
            raise SystemExit(f"SYN_TORCH_COMPILE={compile_mode!r}: use one of {', '.join(COMPILE_MODES)}")
        return cls(autocast, None if channels_last == "auto" else channels_last in ("1", "true"), compile_mode)

    def on(self, device) -> "Acceleration":
        """These settings for a model on `device`: auto decided (NHWC on a CPU)."""
        if self.channels_last is not None:
            return self
        return replace(self, channels_last=torch.device(device).type == "cpu")

    @property
    def enabled(self) -> bool:
        """Anything to apply (after `on`)."""
        return bool(self.channels_last) or self.autocast != "off" or self.compile != "off"

    def describe(self) -> str:
        layout = "auto" if self.channels_last is None else int(self.channels_last)
        return f"autocast={self.autocast} channels_last={layout} compile={self.compile}"

    def module(self, module: nn.Module) -> nn.Module:
        """The model as served (in place): with channels_last, BatchNorms folded and the NHWC layout.
        Callers that keep the loaded network for other uses pass a copy (`served_copy`)."""
        if self.channels_last:
            fold_batchnorms(module)
            module.to(memory_format=torch.channels_last)
        return module

    def served_copy(self, module: nn.Module) -> nn.Module:
        """`module` itself when nothing changes its layers, else a copy with `module` applied."""
        return self.module(copy.deepcopy(module)) if self.channels_last else module

    def function(self, fn):
        """`fn` compiled with the chosen mode (shapes may vary: batch sizes differ call to call)."""
        if self.compile == "off":
            return fn
        return torch.compile(fn, mode=None if self.compile == "default" else self.compile, dynamic=True)

    def warm(self, fn, example: torch.Tensor, max_batch_size: int, device) -> None:
        """Call the compiled `fn` at every batch size from 1 to `max_batch_size` (copies of the one-item
        batch `example`), under inference mode and the chosen autocast, as the batcher calls it.

        torch.compile specialises on a batch of 1 and bounds each dynamic graph by the sizes it has
        seen (the built-in embedder's first graph covered 2..15), so a batch size first met while
        serving compiled then: 0.9-1.4 s stalls at concurrency 1 and 32, measured. Warmed here, before
        the service reports SERVING, no batch the batcher can form compiles in a call.
        """
        if self.compile == "off":
            return
        with torch.inference_mode(), self.autocasting(device):
            for size in range(1, max_batch_size + 1):
                # A new tensor made in inference mode, as the batcher's batches are: its guards include
                # the tensor's dispatch keys, so a normal tensor here would be a different graph.
                batch = self.images(example.to(device).repeat(size, *[1] * (example.dim() - 1)))
                try:
                    fn(batch)
                except Exception as exc:
                    # Inductor's own error says nothing of the setting that asked for it (on a CPU the
                    # usual cause is no C++ compiler where the service runs, as in the container image).
                    raise RuntimeError(
                        f"SYN_TORCH_COMPILE={self.compile}: compiling at batch size {size} failed "
                        f"({type(exc).__name__}: {exc}); on a CPU torch.compile needs a C++ compiler where "
                        "the service runs; SYN_TORCH_COMPILE=off serves eager") from exc

    def encoder(self, fn, image_size: int, max_batch_size: int, device):
        """An image encoder `fn` (float [B, 3, image_size, image_size] in) compiled with the chosen mode
        and warmed at every batch size up to `max_batch_size` (`warm`); `fn` itself when compile is off."""
        compiled = self.function(fn)
        self.warm(compiled, torch.zeros(1, 3, image_size, image_size), max_batch_size, device)
        return compiled

    def images(self, pixels: torch.Tensor) -> torch.Tensor:
        """An image batch [B,C,H,W] in the chosen memory format."""
        return pixels.contiguous(memory_format=torch.channels_last) if self.channels_last else pixels

    def autocasting(self, device: torch.device):
        """Context for the forward pass: autocast in the chosen dtype, or nothing."""
        dtype = AUTOCAST_DTYPES[self.autocast]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)


def fold_batchnorms(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d in an nn.Sequential into that
    convolution's weights and bias (in place); the BatchNorm's place holds an nn.Identity, so every
    other layer keeps its name. Returns how many were folded.

    In a Sequential the convolution's output goes only to the BatchNorm, so the fold is exact up to
    float rounding: w' = w * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta.
    """
    folded = 0
    for parent in list(module.modules()):
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = parent._modules[first], parent._modules[second]
            if (type(conv) is nn.Conv2d and type(norm) is nn.BatchNorm2d and not conv.training
                    and not norm.training and norm.running_mean is not None):
                parent._modules[first] = fuse_conv_bn_eval(conv, norm)
                parent._modules[second] = nn.Identity()
                folded += 1
    return folded
