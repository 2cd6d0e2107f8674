"""Exact softmax weights of a transformers attention call, for the asked heads and rows only.

``w_ij = exp(s_ij - m_i) / Σ_j exp(s_ij - m_i)`` (torch's fused softmax), i.e. ``exp(s_ij - lse_i)`` with the row's
log-sum-exp kept split as ``lse_i = m_i + log Σ_j exp(s_ij - m_i)`` (the online normaliser's two
parts, Milakov & Gimelshein 2018, arXiv:1805.02867), one block of query rows at a time, where
``s = scaling · q kᵀ (+ softcap, + mask)`` is formed the way the model forms it (``q kᵀ`` in the
inputs' dtype, float32 for half inputs, then scaled).

Why not :func:`attnkit.functional.attention_weights` as it is: it forms ``exp(s - lse)`` with
``lse`` as one float32 number, whose rounding (one unit in the last place of |lse|, ~1e-6 when
|lse| is about 10) enters every weight of the row; kept split, the normaliser's error stays
relative to each weight (~1e-7 for a weight near 1, the softmax's own). And its tiles form the
scores in another order than the model does, which moves them by their float32 rounding (~1e-6
in the weights for MiniLM); here they are the model's own.

Shape legend: B batch, H query heads, Hk key heads, L queries, S keys; ``h`` heads kept,
``R`` rows kept.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["exact_weights", "WEIGHTS_TILE"]

#: scores (elements) of one row block (a block holds about twice that in temporaries)
WEIGHTS_TILE = 1 << 21


@torch.no_grad()
def exact_weights(
    query: Tensor,
    key: Tensor,
    value: Tensor | None = None,
    *,
    heads: Sequence[int] | None = None,
    rows: Sequence[int] | None = None,
    mask: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    score_mod: Callable[..., Tensor] | None = None,
) -> Tensor:
    """Weights (B, h, R, S) of query heads ``heads`` and query rows ``rows`` (None: all) in the query's dtype.

    query (B, H, L, E), key (B, Hk, S, E) with Hk dividing H (query head i reads key head
    i // (H / Hk)); ``mask`` bool (True = attend) or additive float, broadcastable to (B, H, L, S);
    ``causal``: top-left (row r sees keys j <= r, r the true row index); ``scale`` None is
    1/sqrt(E); ``score_mod(s, b, h, q_idx, kv_idx)`` on the scaled scores (FlexAttention's
    convention, true head and row indices). A row with no allowed key gets weights 0. Not
    differentiable (a diagnostic: no autograd graph over the blocks). ``value`` is unused (the
    weights do not depend on it); it is accepted so that the call reads like ``attention()``.
    """
    del value
    B, H, L, E = query.shape
    Hk, S = key.shape[1], key.shape[2]
    groups = H // Hk
    dev = query.device
    head_idx = torch.arange(H, device=dev) if heads is None else torch.tensor(list(heads), device=dev)
    row_idx = torch.arange(L, device=dev) if rows is None else torch.tensor(list(rows), device=dev)
    work = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype
    q = query.index_select(1, head_idx).to(work)  # (B, h, L, E)
    if rows is not None:
        q = q.index_select(2, row_idx)  # (B, h, R, E)
    k = key.index_select(1, torch.div(head_idx, groups, rounding_mode="floor")).to(work)  # (B, h, S, E)
    if mask is not None:
        mask = mask[(None,) * (4 - mask.dim())]  # (B?, H?, L?, S)
        if mask.shape[1] != 1:
            mask = mask.index_select(1, head_idx)
    scale_f = 1.0 / math.sqrt(E) if scale is None else float(scale)
    h, R = q.shape[1], q.shape[2]
    out = torch.empty(B, h, R, S, dtype=query.dtype, device=dev)  # (B, h, R, S)
    step = max(1, WEIGHTS_TILE // max(1, B * h * S))
    kv = torch.arange(S, device=dev)
    for a in range(0, R, step):
        b = min(a + step, R)
        r = row_idx[a:b]
        s = torch.matmul(q[:, :, a:b], k.transpose(-1, -2)).mul_(scale_f)  # (B, h, b-a, S), as the model forms it
        if score_mod is not None:
            s = score_mod(s, torch.arange(B, device=dev).view(B, 1, 1, 1), head_idx.view(1, h, 1, 1),
                          r.view(1, 1, -1, 1), kv.view(1, 1, 1, S))
        masked = mask is not None or causal
        if mask is not None:
            tile = mask.index_select(2, r) if mask.shape[2] != 1 else mask  # (B?, h?, b-a, S)
            s = s.masked_fill_(~tile, float("-inf")) if tile.dtype == torch.bool else s.add_(tile.to(s.dtype))
        if causal:
            s = s.masked_fill_(kv.view(1, S) > r.view(-1, 1), float("-inf"))
        w = torch.softmax(s, dim=-1)  # exp(s - m) / Σ exp(s - m): the row max and sum kept apart
        if masked:
            empty = torch.isneginf(s).all(dim=-1, keepdim=True)  # (B, h, b-a, 1): no allowed key -> 0, not NaN
            w = w.masked_fill_(empty, 0.0)
        out[:, :, a:b] = w
        del s, w
    return out
