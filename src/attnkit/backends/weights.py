"""Weights on demand from fused paths.

A fused kernel (``sdpa``, ``chunked``, ``triton``) never holds the (B, H, L, S)
weights. When they are asked for, :func:`materialise_weights` recomputes them
exactly, one block of query rows at a time, from the row's log-sum-exp:
``w_ij = exp(s_ij - lse_i)``, ``lse_i = log Σ_j exp(s_ij)`` (Milakov & Gimelshein
2018, arXiv:1805.02867, online normaliser). The output still comes from the fused
kernel. The user-facing helpers built on the same tiles (weights of chosen rows and
heads, column sums) are :func:`attnkit.functional.attention_weights` and
:func:`attnkit.functional.column_sums`.

Shape legend: B batch, H heads, L queries, S keys.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..core.spec import AttentionSpec
from .tiles import TileScorer, blocks, exp_safe_lse, online_lse, work_dtype

__all__ = ["materialise_weights"]


def materialise_weights(
    spec: AttentionSpec,
    qp: Tensor,
    kp: Tensor,
    params: Sequence[Tensor],
    *,
    lse: Tensor | None = None,
    rows: tuple[int, int] | None = None,
    block_q: int = 256,
    block_k: int = 1024,
) -> Tensor:
    """Exact weights (B, H, q1 - q0, S) of rows ``rows = (q0, q1)`` (all by default).

    ``qp`` (B, H, L, D) and ``kp`` (B, H, S, D) are projected (kp expanded to
    H heads). With ``lse`` (B, H, L) from the kernel, ``w = exp(s - lse)``;
    without, the row block's log-sum-exp is accumulated over key blocks first.
    Differentiable with respect to qp, kp, params (and lse).
    """
    work = work_dtype(spec.dtype)
    qp, kp = qp.to(work), kp.to(work)
    params = [p.to(work) for p in params]
    scorer = TileScorer(spec)
    q0, q1 = rows if rows is not None else (0, qp.shape[-2])
    S = kp.shape[-2]
    parts = []
    for a, b in blocks(q1 - q0, block_q):
        a, b = a + q0, b + q0
        row_lse = lse[:, :, a:b] if lse is not None else online_lse(scorer, qp, kp, params, spec.mask, a, b, block_k)
        s = scorer(qp[:, :, a:b], kp, params, scorer.mask_tile(spec.mask, a, b, 0, S), a, 0)  # (B, H, b-a, S)
        parts.append(torch.exp(s - exp_safe_lse(row_lse.to(work)).unsqueeze(-1)))
    return torch.cat(parts, dim=2).to(spec.dtype)  # (B, H, q1-q0, S)
