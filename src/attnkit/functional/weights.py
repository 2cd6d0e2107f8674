"""Softmax weights of chosen rows and heads, and column sums, without an (L, S) tensor.

Both rebuild ``w_ij = exp(s_ij - lse_i)`` tile by tile from the row log-sum-exp
``lse_i = log Σ_j exp(s_ij)`` (Milakov & Gimelshein 2018, arXiv:1805.02867), with
the tiles of :mod:`attnkit.backends.tiles`:

* :func:`attention_weights`: the weights of chosen rows / heads only, memory
  O(B·h·rows·S) instead of O(B·H·L·S).
* :func:`column_sums`: Σ_i w_ij, the total attention each key receives
  (coverage, "which source tokens were read"), in O(B·H·(L + S)) memory.

Both are diagnostics: they run under ``torch.no_grad()`` and return tensors with no
``grad_fn``, even for inputs that require grad (an autograd graph over every tile would
hold the (L, S) scores, times D for the additive score, that they exist to avoid). For
weights to differentiate, use ``attention(..., return_weights=True)``.

Shape legend: B batch, H heads, L queries, S keys.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch
from torch import Tensor

from ..backends.tiles import TileScorer, blocks, exp_safe_lse, online_lse, work_dtype
from ..backends.weights import materialise_weights
from ..core.reference import expand_kv
from ..core.spec import AttentionSpec
from .attention import build_spec

__all__ = ["attention_weights", "column_sums"]


def _spec(query: Tensor, key: Tensor, value: Tensor | None, kwargs: dict[str, Any]) -> AttentionSpec:
    for name in ("return_weights", "return_log_prob", "dropout_p", "backend"):
        if name in kwargs:
            raise TypeError(f"{name}= is not an option of this helper; it reads the softmax weights only")
    spec = build_spec(query, key, key if value is None else value, **kwargs)
    if not spec.normalizer.is_softmax:
        raise ValueError(
            f"normalizer {spec.normalizer.name!r} has no log-sum-exp; these helpers rebuild softmax weights, "
            "call attention(..., return_weights=True) for other normalizers"
        )
    return spec


def _select_heads(spec: AttentionSpec, heads: Sequence[int]) -> AttentionSpec:
    """The spec restricted to query heads ``heads`` (index grids keep the true head numbers)."""
    H = spec.H
    bad = [h for h in heads if not (0 <= h < H)]
    if bad or not heads:
        raise ValueError(f"heads must be a non-empty list of head indices in [0, {H}), got {list(heads)}")
    idx = torch.tensor(list(heads), device=spec.device)
    k = expand_kv(spec.key, spec.groups)[:, idx]  # (B, h, S, Ek)
    v = expand_kv(spec.value, spec.groups)[:, idx]  # (B, h, S, Ev)
    mask = spec.mask
    if mask is not None and mask.dim() >= 3 and mask.shape[-3] != 1:
        mask = mask.index_select(mask.dim() - 3, idx)
    smod, mmod = spec.score_mod, spec.mask_mod

    def score_mod(s: Tensor, b: Tensor, h: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
        return smod(s, b, idx[h], qi, ki)  # h indexes the selected heads; idx[h] is the true head

    def mask_mod(b: Tensor, h: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
        return mmod(b, idx[h], qi, ki)

    return dataclasses.replace(
        spec,
        query=spec.query[:, idx],
        key=k,
        value=v,
        mask=mask,
        score_mod=None if smod is None else score_mod,
        mask_mod=None if mmod is None else mask_mod,
    )


def _project(spec: AttentionSpec, heads: Sequence[int] | None) -> tuple[AttentionSpec, Tensor, Tensor, list[Tensor]]:
    """Projected (qp, kp) on all heads, then cut to ``heads``; per-head params (H, ...) cut too."""
    H = spec.H
    qp, kp = spec.score.project(spec.query, expand_kv(spec.key, spec.groups))  # (B, H, L, D), (B, H, S, D)
    params = list(spec.score.params())
    if heads is None:
        return spec, qp, kp, params
    sub = _select_heads(spec, heads)
    idx = torch.tensor(list(heads), device=spec.device)
    params = [p[idx] if p.dim() >= 2 and p.shape[0] == H else p for p in params]
    return sub, qp[:, idx], kp[:, idx], params


@torch.no_grad()
def attention_weights(
    query: Tensor,
    key: Tensor,
    value: Tensor | None = None,
    *,
    rows: tuple[int, int] | None = None,
    heads: Sequence[int] | None = None,
    block_q: int = 256,
    block_k: int = 1024,
    **kwargs: Any,
) -> Tensor:
    """Exact softmax weights of query rows ``rows = (start, stop)`` and query heads ``heads``.

    Takes the arguments of :func:`attnkit.functional.attention` (score, mask,
    causal, score_mod, ...). Returns (B, len(heads), stop - start, S), or
    (B, stop - start, S) for 3-D inputs; memory O(that + B·H·(L + S)·D). Not differentiable:
    computed under ``torch.no_grad()`` (see the module docstring).

    Example::

        >>> w = attention_weights(q, k, score="additive", score_params=p, rows=(10, 12), heads=[0])
    """
    three_d = query.dim() == 3
    spec = _spec(query, key, value, kwargs)
    if rows is not None:
        q0, q1 = rows
        if not (0 <= q0 < q1 <= spec.L):
            raise ValueError(f"rows must be (start, stop) with 0 <= start < stop <= L = {spec.L}, got {rows!r}")
    sub, qp, kp, params = _project(spec, heads)
    w = materialise_weights(sub, qp, kp, params, rows=rows, block_q=block_q, block_k=block_k)
    return w.squeeze(1) if three_d else w


@torch.no_grad()
def column_sums(
    query: Tensor,
    key: Tensor,
    value: Tensor | None = None,
    *,
    block_q: int = 256,
    block_k: int = 1024,
    **kwargs: Any,
) -> Tensor:
    """Σ_i w_ij: the total attention each key receives, (B, H, S) ((B, S) for 3-D inputs).

    Two passes over (block_q, block_k) tiles (the row log-sum-exp, then the
    weights summed over rows); never holds an (L, S) tensor. Same arguments as
    :func:`attnkit.functional.attention`. A fully masked row adds nothing. Not
    differentiable: computed under ``torch.no_grad()``, so inputs that require grad build
    no graph (see the module docstring).
    """
    three_d = query.dim() == 3
    spec = _spec(query, key, value, kwargs)
    _, qp, kp, params = _project(spec, None)
    work = work_dtype(spec.dtype)
    qp, kp = qp.to(work), kp.to(work)
    params = [p.to(work) for p in params]
    scorer = TileScorer(spec)
    total = torch.zeros(spec.B, spec.H, spec.S, dtype=work, device=spec.device)  # (B, H, S)
    for q0, q1 in blocks(spec.L, block_q):
        lse = exp_safe_lse(online_lse(scorer, qp, kp, params, spec.mask, q0, q1, block_k)).unsqueeze(-1)
        for k0, k1 in blocks(spec.S, block_k):
            if not scorer.visible(q0, q1, k0):
                break
            s = scorer(qp[:, :, q0:q1], kp[:, :, k0:k1], params, scorer.mask_tile(spec.mask, q0, q1, k0, k1), q0, k0)
            total[:, :, k0:k1] += torch.exp(s - lse).sum(-2)
    total = total.to(spec.dtype)
    return total.squeeze(1) if three_d else total
