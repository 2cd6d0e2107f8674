"""The oracle: plain attention that materialises scores and weights.

``weights = normalize(scale · score(q, k) + bias, mask)``; ``output = weights @ v``.

Every fast path is tested against :func:`run` in float64. It is written to be
obviously right, not fast: it holds the full (B, H, L, S) scores (and, for the
additive score, the (B, H, L, S, D) tanh tensor).

:func:`apply_masks` is also the one place that turns a spec's mask, causal flag,
``mask_mod`` and ``score_mod`` into scores for a block of queries and keys, so
tiled kernels reuse it on their tiles.

:func:`no_keys` is the one rule for a call with no keys at all (S = 0), which
``attention()`` applies before any backend or normalizer runs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .masks import CAUSAL_ALIGNMENTS, mask_index
from .normalize import logsumexp_safe
from .spec import AttentionResult, AttentionSpec, index_grids

__all__ = ["run", "apply_masks", "expand_kv", "dropout", "no_keys", "keep_nan"]


def expand_kv(x: Tensor, groups: int) -> Tensor:
    """(B, Hk, S, E) -> (B, Hk * groups, S, E) for grouped-query attention."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)  # (B, H, S, E)


def apply_masks(spec: AttentionSpec, s: Tensor, q0: int = 0, k0: int = 0) -> Tensor:
    """Scores of queries q0.. and keys k0.. with score_mod, bias and masks applied.

    ``s`` (B, H, lq, sk) are scaled scores. Forbidden positions become -inf.
    """
    B, H, lq, sk = s.shape
    if spec.score_mod is not None or spec.mask_mod is not None:
        b, h, qi, ki = index_grids(B, H, lq, sk, s.device, q0, k0)
        if spec.score_mod is not None:
            s = spec.score_mod(s, b, h, qi, ki)
        if spec.mask_mod is not None:
            allowed = spec.mask_mod(b, h, qi, ki)
            s = s.masked_fill(~allowed.to(torch.bool), float("-inf"))
    if spec.mask is not None:
        m = spec.mask[mask_index(spec.mask, q0, q0 + lq, k0, k0 + sk)]
        if m.dtype == torch.bool:
            s = s.masked_fill(~m, float("-inf"))
        else:
            s = s + m.to(s.dtype)
    if spec.causal is not None:
        assert spec.causal in CAUSAL_ALIGNMENTS
        offset = 0 if spec.causal == "top_left" else spec.S - spec.L
        i = torch.arange(q0, q0 + lq, device=s.device)[:, None]
        j = torch.arange(k0, k0 + sk, device=s.device)[None, :]
        s = s.masked_fill(j > i + offset, float("-inf"))
    return s


def dropout(w: Tensor, p: float, generator: torch.Generator | None) -> Tensor:
    """Inverted dropout on the weights: zero with probability p, scale by 1/(1-p)."""
    if p == 0.0:
        return w
    keep = torch.rand(w.shape, generator=generator, device=w.device, dtype=torch.float32) >= p
    return w * keep.to(w.dtype) / (1.0 - p)


def keep_nan(s: Tensor, w: Tensor, log_prob: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """NaN in, NaN out after a normalizer: rows whose scores s (.., L, S) hold a NaN get NaN weights
    (and log_prob). Softmax propagates NaN by itself; sparsemax, entmax15 and sample read a NaN
    score as a forbidden key and would return a silent 0 for such a row."""
    bad = torch.isnan(s).any(-1, keepdim=True)  # (.., L, 1)
    nan = torch.full((), float("nan"), dtype=w.dtype, device=w.device)
    w = torch.where(bad, nan, w)
    if log_prob is not None:
        log_prob = torch.where(bad.squeeze(-1), nan.to(log_prob.dtype), log_prob)
    return w, log_prob


def run(spec: AttentionSpec, *, dtype: torch.dtype | None = torch.float64) -> AttentionResult:
    """Materialised attention. ``dtype``: compute in it (float64 for the oracle);
    ``None`` computes in the input dtype (float32 for half inputs' softmax)."""
    q, k, v = spec.query, spec.key, spec.value
    in_dtype = q.dtype
    work = dtype if dtype is not None else in_dtype
    if work in (torch.float16, torch.bfloat16):
        work_norm = torch.float32
    else:
        work_norm = work
    q, k, v = q.to(work), k.to(work), v.to(work)
    k = expand_kv(k, spec.groups)  # (B, H, S, Ek)
    v = expand_kv(v, spec.groups)  # (B, H, S, Ev)

    score = spec.score
    qp, kp = score.project(q, k)
    params = [p.to(work) for p in score.params()]
    s = score.pairwise(qp.to(work), kp.to(work), *params) * spec.scale  # (B, H, L, S)
    s = apply_masks(spec, s.to(work_norm))

    w, log_prob = spec.normalizer(s, generator=spec.generator)
    if not spec.normalizer.is_softmax:
        w, log_prob = keep_nan(s, w, log_prob)
    lse = logsumexp_safe(s) if spec.normalizer.is_softmax else None
    w_drop = dropout(w, spec.dropout_p, spec.generator)
    out = w_drop.to(work) @ v  # (B, H, L, Ev)
    return AttentionResult(
        output=out.to(in_dtype),
        weights=w.to(in_dtype) if spec.return_weights else None,
        log_prob=log_prob,
        lse=lse,
    )


def no_keys(spec: AttentionSpec) -> AttentionResult:
    """The result of a call with no keys (S = 0): every row is a row with no allowed key.

    Output 0 (B, H, L, Ev), weights (B, H, L, 0), log_prob 0 (B, H, L) for a stochastic
    normalizer, lse -inf; no normalizer runs (there is nothing to normalise). The output
    is ``w @ v`` over the empty (B, H, L, 0) scores, so it stays connected to query, key,
    value, the score's parameters and a float mask, whose gradients are finite zeros.
    """
    q = spec.query
    k = expand_kv(spec.key, spec.groups)  # (B, H, 0, Ek)
    v = expand_kv(spec.value, spec.groups)  # (B, H, 0, Ev)
    qp, kp = spec.score.project(q, k)
    s = spec.score.pairwise(qp, kp, *spec.score.params()) * spec.scale  # (B, H, L, 0)
    w = apply_masks(spec, s).to(q.dtype)  # still (B, H, L, 0): no element, nothing to normalise
    out = w @ v.to(q.dtype)  # (B, H, L, Ev): a sum over no keys, 0
    lse = torch.full(out.shape[:-1], float("-inf"), dtype=out.dtype, device=out.device)
    return AttentionResult(
        output=out,
        weights=w if spec.return_weights else None,
        log_prob=w.sum(-1) if spec.normalizer.stochastic else None,  # (B, H, L), 0
        lse=lse if spec.normalizer.is_softmax else None,
    )
