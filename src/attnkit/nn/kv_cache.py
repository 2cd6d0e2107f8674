"""The key/value cache of incremental decoding (Vaswani et al. 2017, arXiv:1706.03762, section 3.2.3).

A causal decoder's step t attends over the keys and values of positions 0..t,
``out_t = softmax(q_t [k_0 .. k_t]ᵀ / sqrt(d)) [v_0 .. v_t]``; the projections of
0..t-1 do not change, so they are kept instead of recomputed: decoding n tokens
projects n positions, not n²/2.

Shape legend: B batch, Hk key/value heads, C capacity (positions), Dh features per head.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ._common import shape_str
from .projections import ProjectionSource

__all__ = ["KVCache"]


class KVCache:
    """Projected keys and values of the positions seen so far, for incremental decoding.

    Preallocated (B, Hk, C, Dh) buffers written in place (out of place when
    autograd is recording through them), so decoding n tokens costs no
    reallocation. Build one with :meth:`MultiHeadAttention.new_cache`.

    ``static=True`` is for cross-attention: the first call stores the
    projected encoder keys/values and records what they came from
    (:attr:`source`); later calls reuse them, with ``key=None`` or with the
    same key tensor again. Appending past ``capacity`` raises. :meth:`reorder`
    selects batch rows (beam search).
    """

    def __init__(self, key: Tensor, value: Tensor, *, static: bool = False, length: int = 0) -> None:
        if key.dim() != 4 or value.dim() != 4 or key.shape[:3] != value.shape[:3]:
            raise ValueError(
                f"KVCache needs key and value buffers (B, Hk, capacity, Dh) that agree on (B, Hk, capacity); "
                f"got {shape_str(key)} and {shape_str(value)}"
            )
        if not 0 <= length <= key.shape[2]:
            raise ValueError(f"length must be in 0..capacity={key.shape[2]}, got {length!r}")
        self.key = key
        self.value = value
        self.static = bool(static)
        self.length = length
        #: what a static cache was filled from (None until it is filled)
        self.source: Optional[ProjectionSource] = None

    @classmethod
    def filled(cls, key: Tensor, value: Tensor, source: ProjectionSource) -> "KVCache":
        """A static cache holding k, v (B, Hk, S, Dh) projected from ``source``."""
        cache = cls(key, value, static=True, length=key.shape[2])
        cache.source = source
        return cache

    @property
    def capacity(self) -> int:
        return self.key.shape[2]

    @property
    def batch_size(self) -> int:
        return self.key.shape[0]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (B, Hk, n, Dh) after the cached positions; return all (B, Hk, length, Dh)."""
        n = k.shape[2]
        if self.static and self.length > 0:
            raise ValueError("this static (cross-attention) cache is already filled; pass key=None to reuse it")
        if (
            k.shape[:2] != self.key.shape[:2]
            or k.shape[-1] != self.key.shape[-1]
            or v.shape[-1] != self.value.shape[-1]
        ):
            raise ValueError(
                f"cache holds (B, Hk, ., Dh) = {shape_str(self.key)} but got keys {shape_str(k)}; "
                "build the cache with this layer's new_cache(batch_size, capacity)"
            )
        end = self.length + n
        if end > self.capacity:
            raise ValueError(
                f"cache capacity exceeded: it holds {self.length} of {self.capacity} positions and {n} more were "
                f"appended; build it with new_cache(batch_size, capacity={end}) or larger"
            )
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad or self.key.requires_grad):
            self.key = torch.cat([self.key[:, :, : self.length], k, self.key[:, :, end:]], dim=2)
            self.value = torch.cat([self.value[:, :, : self.length], v, self.value[:, :, end:]], dim=2)
        else:
            self.key[:, :, self.length : end] = k
            self.value[:, :, self.length : end] = v
        self.length = end
        return self.keys_so_far()

    def keys_so_far(self) -> tuple[Tensor, Tensor]:
        return self.key[:, :, : self.length], self.value[:, :, : self.length]  # (B, Hk, length, Dh)

    def reorder(self, index: Tensor) -> "KVCache":
        """Keep batch rows ``index`` (beam search reordering), in place; returns self."""
        self.key = self.key.index_select(0, index)
        self.value = self.value.index_select(0, index)
        self.source = None  # the rows no longer are those of the recorded inputs
        return self

    def reset(self) -> "KVCache":
        self.length = 0
        self.source = None
        return self

    def __repr__(self) -> str:
        kind = "static " if self.static else ""
        return f"KVCache({kind}{self.length}/{self.capacity}, key={shape_str(self.key)})"
