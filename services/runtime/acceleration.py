"""Device speed-ups a service can switch on per deployment, each off by default.

| variable | values | what it does |
| --- | --- | --- |
| `SYN_AUTOCAST` | off (default), bf16, fp16 | runs the forward pass under `torch.autocast` in that dtype (matmuls and convolutions in half precision, reductions and softmax in float32) |
| `SYN_CHANNELS_LAST` | 0 (default), 1 | convolution weights and input batches in NHWC (`torch.channels_last`), the layout cuDNN's tensor-core kernels want |
| `SYN_TORCH_COMPILE` | off (default), default, reduce-overhead, max-autotune | `torch.compile` of the convolutional image encoders with that mode; `reduce-overhead` captures CUDA graphs on a GPU |

They pay on a GPU (tensor cores, fewer kernel launches). On a CPU autocast costs (bf16 matmuls
without AMX) and `torch.compile` pays some (+12-16% at concurrency 32 on the 2-core machine) but needs
a C++ compiler at run time and 10-30 s more start-up, so the defaults stay off and each switch is
tested for equivalence on CPU against float32 eager (tests/runtime/test_acceleration.py states the
tolerances). A compiled function is warmed at every batch size the batcher can form (`warm`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class Acceleration:
    autocast: str = "off"
    channels_last: bool = False
    compile: str = "off"

    @classmethod
    def from_settings(cls, settings) -> "Acceleration":
        """Read SYN_AUTOCAST, SYN_CHANNELS_LAST and SYN_TORCH_COMPILE; a bad value stops the service."""
        autocast = settings.env("AUTOCAST", "off").strip().lower() or "off"
        if autocast not in AUTOCAST_DTYPES:
            raise SystemExit(f"SYN_AUTOCAST={autocast!r}: use one of {', '.join(AUTOCAST_DTYPES)}")
        channels_last = settings.env("CHANNELS_LAST", "0").strip().lower()
        if channels_last not in ("0", "1", "true", "false", ""):
            raise SystemExit(f"SYN_CHANNELS_LAST={channels_last!r}: use 0 or 1")
        compile_mode = settings.env("TORCH_COMPILE", "off").strip().lower() or "off"
        if compile_mode not in COMPILE_MODES:
            raise SystemExit(f"SYN_TORCH_COMPILE={compile_mode!r}: use one of {', '.join(COMPILE_MODES)}")
        return cls(autocast, channels_last in ("1", "true"), compile_mode)

    @property
    def enabled(self) -> bool:
        return self != Acceleration()

    def describe(self) -> str:
        return f"autocast={self.autocast} channels_last={int(self.channels_last)} compile={self.compile}"

    def module(self, module: torch.nn.Module) -> torch.nn.Module:
        """The model in the chosen memory format (in place; weights keep their values)."""
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

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
