"""How text-to-image generators are run for serving, shared by the built-in GAN and DF-GAN.

* `sample_noise`: a request's noise, drawn on the CPU row after row from its seed, so image i
  does not depend on how many images were asked for; optionally truncated (DF-GAN samples
  truncnorm(-2, 2) scaled by 0.88).
* `PromptEmbeddings`: one text-encoder call per prompt (a recurrent encoder's output must not
  depend on its batch-mates), cached: real traffic repeats prompts.
* `generate_in_chunks`: the generator always sees `chunk` rows (zero-padded), because
  convolution kernels are chosen per batch shape and round differently (~1e-6), so a fixed
  shape keeps a sample's bytes independent of the requests sharing its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch

# Distinct prompts kept; the cache is simply emptied when full.
CACHED_PROMPTS = 4096


def sample_noise(seed: int, count: int, dim: int, truncation: tuple[float, float] | None = None) -> torch.Tensor:
    """[count, dim] standard normal noise from `seed`; with `truncation=(bound, scale)` each value is drawn
    from the normal truncated to [-bound, bound] (inverse-CDF sampling, torch's trunc_normal_) times `scale`."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    rows = []
    for _ in range(count):
        if truncation is None:
            rows.append(torch.randn(1, dim, generator=generator))
        else:
            bound, scale = truncation
            row = torch.nn.init.trunc_normal_(torch.empty(1, dim), 0.0, 1.0, -bound, bound, generator=generator)
            rows.append(row * scale)
    return torch.cat(rows)


class PromptEmbeddings:
    """`embed(key)` computed once per distinct key (a prompt's token ids) and kept."""

    def __init__(self, embed: Callable[[Hashable], torch.Tensor]) -> None:
        self.embed = embed
        self._cache: dict[Hashable, torch.Tensor] = {}

    def __call__(self, key: Hashable) -> torch.Tensor:
        if key not in self._cache:
            if len(self._cache) >= CACHED_PROMPTS:
                self._cache.clear()
            self._cache[key] = self.embed(key)
        return self._cache[key]


def generate_in_chunks(network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], text: list[torch.Tensor],
                       noise: list[torch.Tensor], chunk: int, device: torch.device) -> list[torch.Tensor]:
    """`network(noise rows, text rows)` for every request (text [1, d] and noise [n, noise_dim] each), run
    on fixed chunks of `chunk` rows; the outputs split back per request, on the CPU."""
    text_rows = torch.cat([t.expand(len(n), -1) for t, n in zip(text, noise)])
    rows = torch.cat(noise).to(device)
    parts = []
    for start in range(0, len(rows), chunk):
        part = slice(start, start + chunk)
        parts.append(network(*_padded((rows[part], text_rows[part]), chunk))[:len(rows[part])])
    return list(torch.cat(parts).cpu().split([len(n) for n in noise]))


def _padded(parts: tuple[torch.Tensor, ...], rows: int) -> list[torch.Tensor]:
    """Zero-pad each tensor to `rows` rows."""
    return [torch.cat([p, p.new_zeros(rows - len(p), *p.shape[1:])]) if len(p) < rows else p for p in parts]
