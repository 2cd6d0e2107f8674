"""Content- and location-based addressing of the Neural Turing Machine:
Graves, Wayne & Danihelka 2014 (arXiv:1410.5401), section 3.3.

``w_t = sharpen(shift(g_t · softmax(β_t cos(k_t, M)) + (1 - g_t) · w_{t-1}, s_t), γ_t)``

* content: ``w^c_t(i) = softmax_i(β_t · cos(k_t, M_t(i)))``, β_t >= 0 the key strength;
* interpolation: ``w^g_t = g_t w^c_t + (1 - g_t) w_{t-1}``, g_t ∈ (0, 1);
* circular shift: ``w̃_t(i) = Σ_j w^g_t(j) s_t(i - j mod N)``;
* sharpening: ``w_t(i) = w̃_t(i)^γ_t / Σ_j w̃_t(j)^γ_t``, γ_t >= 1.

The pure functions :func:`circular_shift`, :func:`sharpen` and
:func:`ntm_address` hold the math; :class:`ContentAttention` owns the layers
that emit k_t, β_t, g_t, s_t, γ_t from the controller state, and carries w_t
from step to step as its ``state``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..core.scores import Cosine
from ._common import attend, check_dim, decoder_inputs
from .base import AttentionOutput
from .registry import register_mechanism

__all__ = ["ContentAttention", "circular_shift", "sharpen", "ntm_address"]


def circular_shift(w: Tensor, s: Tensor) -> Tensor:
    """``w̃(i) = Σ_k s(k) w(i - k mod N)`` for shifts k = -R..R.

    w (..., N) weights; s (..., 2R + 1) shift distribution, s[..., 0] for
    shift -R, s[..., R] for no shift, s[..., 2R] for shift +R. -> (..., N)
    """
    R = (s.shape[-1] - 1) // 2
    if s.shape[-1] != 2 * R + 1:
        raise ValueError(f"the shift distribution needs an odd size 2R + 1, got {s.shape[-1]}")
    out = torch.zeros_like(w)
    for j, k in enumerate(range(-R, R + 1)):
        out = out + s[..., j : j + 1] * torch.roll(w, shifts=k, dims=-1)  # roll(w, k)[i] = w[i - k]
    return out


def sharpen(w: Tensor, gamma: Tensor | float, *, eps: float = 1e-12) -> Tensor:
    """``w(i)^γ / Σ_j w(j)^γ`` over the last dim; gamma broadcastable to (..., 1)."""
    p = w.clamp_min(eps) ** gamma
    p = torch.where(w > 0, p, torch.zeros_like(p))  # exact zeros (masked rows) stay zero
    z = p.sum(-1, keepdim=True)
    return p / torch.where(z > 0, z, torch.ones_like(z))


def ntm_address(w_c: Tensor, w_prev: Tensor, g: Tensor, s: Tensor, gamma: Tensor,
                mask: Optional[Tensor] = None) -> Tensor:
    """One NTM addressing step from the content weights w_c (..., N).

    g (..., 1) interpolation gate, s (..., 2R+1) shifts, gamma (..., 1) >= 1;
    mask (..., N) 1 at real memory rows: weight shifted onto padding is
    dropped before sharpening renormalises.
    """
    w_g = g * w_c + (1 - g) * w_prev
    w_s = circular_shift(w_g, s)
    if mask is not None:
        w_s = w_s * mask
    return sharpen(w_s, gamma)


@register_mechanism(
    "content",
    "neural-turing-machine",
    paper="Graves, Wayne & Danihelka 2014 (arXiv:1410.5401)",
    formula="w_t = sharpen(shift(g·softmax(β cos(k_t, M)) + (1-g)·w_{t-1}, s_t), γ_t)",
)
class ContentAttention(nn.Module):
    """NTM addressing as an attention layer, usable step by step with its state.

    From the query (the controller state h_t) linear heads emit the key
    k_t = W_k h_t, β_t = softplus(.), g_t = sigmoid(.), s_t = softmax(.) over
    2R+1 shifts and γ_t = 1 + softplus(.). The memory M is ``keys`` (B, N,
    key_dim), the read vector is ``Σ_i w_t(i) values_i``.

    Args:
        query_dim: features of the controller state.
        key_dim: features of a memory row; default ``query_dim``.
        value_dim: features of the values; default ``key_dim``.
        shift_range: R, shifts -R..R (1 in the paper's experiments).
        location: use the interpolation, shift and sharpening steps; False
            gives pure content addressing ``softmax(β cos(k, M))``.

    ``forward(query (B, L, Dq) or (B, Dq), keys (B, N, Dk), ..., key_allowed=None, state=w_prev)``:
    ``key_allowed`` (B, N) bool is True at the memory rows that may be read (False =
    padding; torch's ``key_padding_mask`` is its negation).
    with L > 1 the L queries are L successive steps. ``state`` is the
    previous weights (B, N); None starts from the uniform weighting over the
    real rows. The returned state is the last step's weights (B, N).
    """

    def __init__(
        self,
        query_dim: int,
        *,
        key_dim: Optional[int] = None,
        value_dim: Optional[int] = None,
        shift_range: int = 1,
        location: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_dim(query_dim, "query_dim")
        check_dim(key_dim, "key_dim", allow_none=True)
        check_dim(value_dim, "value_dim", allow_none=True)
        if isinstance(shift_range, bool) or not isinstance(shift_range, int) or shift_range < 0:
            raise ValueError(f"shift_range (R, shifts -R..R) must be an int >= 0, got {shift_range!r}")
        fk = {"device": device, "dtype": dtype}
        self.query_dim = query_dim
        self.key_dim = key_dim or query_dim
        self.value_dim = value_dim or self.key_dim
        self.output_dim = self.value_dim
        self.shift_range = shift_range
        self.location = bool(location)
        self.key = nn.Linear(query_dim, self.key_dim, **fk)
        self.beta = nn.Linear(query_dim, 1, **fk)
        if self.location:
            self.gate = nn.Linear(query_dim, 1, **fk)
            self.shift = nn.Linear(query_dim, 2 * shift_range + 1, **fk)
            self.gamma = nn.Linear(query_dim, 1, **fk)

    def _content(self, h: Tensor, mem: Tensor, values: Tensor, mask: Optional[Tensor]) -> Tensor:
        """Content weights softmax(β cos(k, M)) (B, L, N) via attnkit.functional."""
        k = self.key(h)  # (B, L, Dk)
        beta = F.softplus(self.beta(h)).squeeze(-1)  # (B, L)
        _, w = attend(k, mem, values, score=Cosine(beta.unsqueeze(1)), mask=mask, return_weights=True)  # β (B, 1, L)
        return w  # (B, L, N)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Optional[Tensor] = None,
        *,
        key_allowed: Optional[Tensor] = None,
        step: Optional[int] = None,
        state: Optional[Tensor] = None,
        need_weights: bool = False,
    ) -> AttentionOutput:
        di = decoder_inputs(
            "ContentAttention", query, keys, values, key_allowed,
            query_dim=self.query_dim, key_dim=self.key_dim, value_dim=self.value_dim,
        )
        B, L, _ = di.query.shape
        N = di.keys.shape[1]
        w_c = self._content(di.query, di.keys, di.values, di.mask)  # (B, L, N)
        if key_allowed is not None:
            real = key_allowed.to(w_c.dtype)  # (B, N) 1 at the rows that may be read
        else:
            real = torch.ones(B, N, dtype=w_c.dtype, device=w_c.device)
        if not self.location:
            ws = w_c
            w_last = ws[:, -1]
        else:
            if state is None:
                w_prev = real / real.sum(-1, keepdim=True).clamp_min(1)  # uniform over the real rows
            elif not isinstance(state, Tensor) or state.shape != (B, N):
                got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
                raise ValueError(f"state must be the previous weights (B, N) = ({B}, {N}), got {got}")
            else:
                w_prev = state.to(w_c.dtype)
            h = di.query
            g = torch.sigmoid(self.gate(h))  # (B, L, 1)
            s = torch.softmax(self.shift(h), dim=-1)  # (B, L, 2R + 1)
            gamma = 1 + F.softplus(self.gamma(h))  # (B, L, 1)
            steps = []
            for t in range(L):
                w_prev = ntm_address(w_c[:, t], w_prev, g[:, t], s[:, t], gamma[:, t], real)  # (B, N)
                steps.append(w_prev)
            ws = torch.stack(steps, dim=1)  # (B, L, N)
            w_last = w_prev
        ctx = ws @ di.values  # (B, L, Dv): the read vectors
        if di.squeeze:
            ctx, ws = ctx.squeeze(1), ws.squeeze(1)  # (B, Dv), (B, N)
        return AttentionOutput(ctx, ws if need_weights else None, None, w_last)

    def extra_repr(self) -> str:
        return f"{self.query_dim}, key_dim={self.key_dim}, shift_range={self.shift_range}, location={self.location}"
