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

__all__ = ["materialise_weights", "weights_bytes", "WEIGHTS_TILE"]

#: elements of one row block's scores times its pairwise features (additive's (.., D) tanh):
#: :func:`materialise_weights` takes fewer rows per block when a block would hold more.
WEIGHTS_TILE = 1 << 21


def _pair_features(spec: AttentionSpec, qp_features: int) -> int:
    """Features of the pairwise intermediate per (query, key) pair: 1 for a dot product."""
    return 1 if spec.score.lowers_to_dot else qp_features


def _rows(spec: AttentionSpec, block_q: int, S: int, pair: int) -> int:
    """Query rows per block: at most ``block_q``, and at most WEIGHTS_TILE elements of
    (B, H, rows, S, pair) intermediate."""
    return max(1, min(block_q, WEIGHTS_TILE // max(1, spec.B * spec.H * S * pair)))


def _tracks_grad(spec: AttentionSpec, lse: Tensor | None) -> bool:
    return torch.is_grad_enabled() and (spec.needs_grad or (lse is not None and lse.requires_grad))


def weights_bytes(spec: AttentionSpec, qp_features: int, *, block_q: int = 256) -> int:
    """Peak bytes :func:`materialise_weights` holds for all the (B, H, L, S) weights of ``spec``
    (``qp_features``: the projected query's last size): the result, one row block's temporaries
    (scores, shifted scores, exp, and the pairwise intermediate of a score that is not a dot
    product) and, when gradients are recorded, every block's exp and pairwise intermediate
    saved for backward plus the concatenation."""
    work = 8 if work_dtype(spec.dtype) == torch.float64 else 4
    out = spec.query.element_size()
    pair = _pair_features(spec, qp_features)
    rows = _rows(spec, block_q, spec.S, pair)
    full = spec.B * spec.H * spec.L * spec.S
    block = spec.B * spec.H * min(rows, spec.L) * spec.S
    temps = block * work * 4 + (block * pair * work * 3 if pair > 1 else 0)
    if not _tracks_grad(spec, None):
        return full * out + temps
    saved = full * work * 2 + (full * pair * work * 2 if pair > 1 else 0)  # parts + cat; saved intermediates
    return saved + (full * out if out != work else 0) + temps


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
    track = _tracks_grad(spec, lse)
    # without autograd each block is written into the result at once (no list of blocks + copy)
    result = None if track else torch.empty(*qp.shape[:2], q1 - q0, S, dtype=spec.dtype, device=qp.device)
    parts = []
    for a, b in blocks(q1 - q0, _rows(spec, block_q, S, _pair_features(spec, qp.shape[-1]))):
        a, b = a + q0, b + q0
        row_lse = lse[:, :, a:b] if lse is not None else online_lse(scorer, qp, kp, params, spec.mask, a, b, block_k)
        s = scorer(qp[:, :, a:b], kp, params, scorer.mask_tile(spec.mask, a, b, 0, S), a, 0)  # (B, H, b-a, S)
        w = torch.exp(s - exp_safe_lse(row_lse.to(work)).unsqueeze(-1))
        if result is None:
            parts.append(w)
        else:
            result[:, :, a - q0:b - q0] = w
        del s, w
    return result if result is not None else torch.cat(parts, dim=2).to(spec.dtype)  # (B, H, q1-q0, S)
