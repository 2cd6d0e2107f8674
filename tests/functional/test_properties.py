"""Property tests (hypothesis) over random shapes, lengths and masks, fully
masked rows included: whatever backend ``auto`` picks agrees with the float64
oracle, never returns NaN, and its weights are distributions (or all zero)."""

from __future__ import annotations

import hypothesis.strategies as st
import torch
from hypothesis import given

from attnkit.functional import attention, masks
from tests.tolerances import assert_close


@st.composite
def problems(draw):
    B = draw(st.integers(1, 3))
    H = draw(st.integers(1, 3))
    L = draw(st.integers(1, 7))
    S = draw(st.integers(1, 9))
    E = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**16))
    lengths = draw(st.lists(st.integers(0, S), min_size=B, max_size=B))
    kind = draw(st.sampled_from(["lengths", "random_bool", "random_float", "causal", "none"]))
    score = draw(st.sampled_from(["scaled_dot", "dot", "cosine", "additive"]))
    normalizer = draw(st.sampled_from(["softmax", "sparsemax", "entmax15"]))
    return B, H, L, S, E, seed, lengths, kind, score, normalizer


def _build(B, H, L, S, E, seed, lengths, kind, score):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, L, E, generator=g)
    k = torch.randn(B, H, S, E, generator=g)
    v = torch.randn(B, H, S, 3, generator=g)
    kw: dict = {}
    if kind == "lengths":
        kw["mask"] = masks.lengths_mask(torch.tensor(lengths), S)
    elif kind == "random_bool":
        kw["mask"] = torch.rand(B, 1, L, S, generator=g) < 0.5
    elif kind == "random_float":
        m = torch.randn(1, H, L, S, generator=g)
        kw["mask"] = m.masked_fill(torch.rand(1, H, L, S, generator=g) < 0.4, float("-inf"))
    elif kind == "causal":
        kw["causal"] = True
    if score == "additive":
        kw["score_params"] = {"w_q": torch.randn(4, E, generator=g), "w_k": torch.randn(4, E, generator=g),
                              "v": torch.randn(4, generator=g)}
    return q, k, v, kw


def _to(kw: dict, dtype: torch.dtype) -> dict:
    """The same keyword arguments with every float tensor cast to ``dtype``."""
    def cast(x):
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return x.to(dtype)
        if isinstance(x, dict):
            return {n: cast(t) for n, t in x.items()}
        return x
    return {n: cast(x) for n, x in kw.items()}


@given(problems())
def test_auto_backend_agrees_with_oracle_and_never_nans(p):
    B, H, L, S, E, seed, lengths, kind, score, normalizer = p
    q, k, v, kw = _build(B, H, L, S, E, seed, lengths, kind, score)
    out, w = attention(q, k, v, score=score, normalizer=normalizer, return_weights=True, **kw)
    ref_out, ref_w = attention(q.double(), k.double(), v.double(), score=score, normalizer=normalizer,
                               return_weights=True, backend="reference", **_to(kw, torch.float64))
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    assert_close(out, ref_out, torch.float32)
    assert_close(w, ref_w, torch.float32)
    sums = w.sum(-1)
    assert torch.all(((sums - 1).abs() < 1e-4) | (sums == 0))
    empty = sums == 0
    assert torch.all(out[empty] == 0)


@given(problems())
def test_gradients_finite_with_empty_rows(p):
    B, H, L, S, E, seed, lengths, kind, score, normalizer = p
    q, k, v, kw = _build(B, H, L, S, E, seed, lengths, kind, score)
    for t in (q, k, v):
        t.requires_grad_(True)
    out = attention(q, k, v, score=score, normalizer=normalizer, **kw)
    (out * torch.randn_like(out)).sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
