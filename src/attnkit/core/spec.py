"""The validated description of one attention call, handed to a backend.

Shape legend: B batch, H query heads, Hk key/value heads (H % Hk == 0:
grouped-query attention), L target, S source, E query features, Ek key
features, Ev value features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor

from .normalize import Normalizer
from .scores import Score

__all__ = ["AttentionSpec", "AttentionResult", "ScoreMod", "MaskMod", "index_grids"]

#: FlexAttention's convention: ``score_mod(score, b, h, q_idx, kv_idx) -> score``.
#: attnkit calls it on whole tensors with broadcastable index grids
#: b (B,1,1,1), h (1,H,1,1), q_idx (1,1,L,1), kv_idx (1,1,1,S) (or on tiles of
#: them), so write it with elementwise torch ops (``torch.where``, not ``if``).
ScoreMod = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]
#: ``mask_mod(b, h, q_idx, kv_idx) -> bool`` (True = attend), same grids.
MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


class AttentionResult(NamedTuple):
    output: Tensor  # (B, H, L, Ev)
    weights: Optional[Tensor] = None  # (B, H, L, S) when asked for
    log_prob: Optional[Tensor] = None  # (B, H, L) for stochastic normalizers
    lse: Optional[Tensor] = None  # (B, H, L) log-sum-exp of the scores (softmax only)


@dataclass
class AttentionSpec:
    query: Tensor  # (B, H, L, E)
    key: Tensor  # (B, Hk, S, Ek)
    value: Tensor  # (B, Hk, S, Ev)
    score: Score
    normalizer: Normalizer
    scale: float
    mask: Optional[Tensor] = None  # bool (True = attend) or float bias, 4-D, broadcastable to (B, H, L, S)
    causal: Optional[str] = None  # None, "top_left" or "bottom_right"
    score_mod: Optional[ScoreMod] = None
    mask_mod: Optional[MaskMod] = None
    dropout_p: float = 0.0
    generator: Optional[torch.Generator] = None
    return_weights: bool = False
    return_log_prob: bool = False

    @property
    def B(self) -> int:
        return self.query.shape[0]

    @property
    def H(self) -> int:
        return self.query.shape[1]

    @property
    def L(self) -> int:
        return self.query.shape[2]

    @property
    def S(self) -> int:
        return self.key.shape[2]

    @property
    def groups(self) -> int:
        """Query heads per key/value head (1 unless grouped-query attention)."""
        return self.query.shape[1] // self.key.shape[1]

    @property
    def device(self) -> torch.device:
        return self.query.device

    @property
    def device_type(self) -> str:
        """"cpu", "cuda", ...: read from ``is_cpu`` / ``is_cuda``, which build no string
        (``device.type`` builds a new one per call); other devices ask ``device.type``."""
        q = self.query
        return "cpu" if q.is_cpu else "cuda" if q.is_cuda else q.device.type

    @property
    def dtype(self) -> torch.dtype:
        return self.query.dtype

    @property
    def needs_grad(self) -> bool:
        ts = [self.query, self.key, self.value, *self.score.params()]
        if self.mask is not None and self.mask.is_floating_point():
            ts.append(self.mask)
        return torch.is_grad_enabled() and any(t.requires_grad for t in ts)


def index_grids(B: int, H: int, L: int, S: int, device, q_offset: int = 0, k_offset: int = 0):
    """Broadcastable index grids (b, h, q_idx, kv_idx) for score_mod / mask_mod."""
    b = torch.arange(B, device=device).view(B, 1, 1, 1)
    h = torch.arange(H, device=device).view(1, H, 1, 1)
    qi = torch.arange(q_offset, q_offset + L, device=device).view(1, 1, L, 1)
    ki = torch.arange(k_offset, k_offset + S, device=device).view(1, 1, 1, S)
    return b, h, qi, ki
