"""Every score x normalizer x mask kind: the math path in float32 against the
float64 oracle, and torch.autograd.gradcheck in float64 (inputs and the score's
own parameters). Hard sampling is tested through its log-probabilities and the
REINFORCE estimator instead (a one-hot draw has no gradient to check)."""

from __future__ import annotations

import pytest
import torch

from attnkit.core.normalize import Gumbel
from attnkit.core.scores import Additive, Cosine, General, Location, get_score
from attnkit.functional import attention, masks
from tests.tolerances import assert_close

B, H, L, S, E, EV = 2, 2, 3, 4, 3, 2

SCORES = ["dot", "scaled_dot", "general", "additive", "cosine", "location"]
MASKS = ["none", "padding", "causal", "window", "fully_masked", "float_bias", "mask_mod", "score_mod"]
# differentiable normalizers (gumbel's noise is fixed by a seeded generator per call)
SMOOTH = ["softmax", "sparsemax", "entmax15", "gumbel"]


def make_params(name: str, dtype: torch.dtype) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    if name == "general":
        return [torch.randn(E, E, generator=g, dtype=dtype)]
    if name == "additive":
        return [torch.randn(5, E, generator=g, dtype=dtype), torch.randn(5, E, generator=g, dtype=dtype),
                torch.randn(5, generator=g, dtype=dtype)]
    if name == "cosine":
        return [torch.rand(B, H, L, generator=g, dtype=dtype) * 3]
    if name == "location":
        return [torch.randn(6, E, generator=g, dtype=dtype)]
    return []


def make_score(name: str, params: list[torch.Tensor]):
    if name == "general":
        return General(*params)
    if name == "additive":
        return Additive(*params)
    if name == "cosine":
        return Cosine(params[0])
    if name == "location":
        return Location(params[0])
    return get_score(name)


def mask_kwargs(kind: str, dtype: torch.dtype) -> dict:
    if kind == "padding":
        return {"mask": masks.lengths_mask(torch.tensor([S - 1, 2]), S)}
    if kind == "causal":
        return {"causal": True}
    if kind == "window":
        return {"mask": masks.window_mask(L, S, 1)}
    if kind == "fully_masked":
        m = torch.ones(L, S, dtype=torch.bool)
        m[1] = False
        return {"mask": m}
    if kind == "float_bias":
        bias = torch.randn(L, S, generator=torch.Generator().manual_seed(2), dtype=dtype)
        bias[0, 1] = float("-inf")
        bias[2] = float("-inf")  # a fully masked row through the float mask
        return {"mask": bias}
    if kind == "mask_mod":
        return {"mask_mod": lambda b, h, i, j: ((i + j) % 2 == 0) & (j <= i + 1)}
    if kind == "score_mod":
        return {"score_mod": lambda s, b, h, i, j: s + 0.25 * (i - j) * (h + 1)}
    return {}


def run(q, k, v, score_name, params, normalizer, kind, backend, **extra):
    kw = mask_kwargs(kind, q.dtype)
    norm = Gumbel(tau=0.7) if normalizer == "gumbel" else normalizer
    gen = torch.Generator().manual_seed(3) if normalizer == "gumbel" else None
    return attention(q, k, v, score=make_score(score_name, params), normalizer=norm, generator=gen,
                     backend=backend, **kw, **extra)


def inputs(dtype: torch.dtype, requires_grad: bool = False):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, H, L, E, generator=g, dtype=dtype)
    k = torch.randn(B, H, S, E, generator=g, dtype=dtype)
    v = torch.randn(B, H, S, EV, generator=g, dtype=dtype)
    return [t.requires_grad_(requires_grad) for t in (q, k, v)]


@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("normalizer", SMOOTH + ["argmax"])
@pytest.mark.parametrize("score", SCORES)
def test_math_float32_matches_float64_reference(score, normalizer, kind):
    q, k, v = inputs(torch.float64)
    p64 = make_params(score, torch.float64)
    ref_out, ref_w = run(q, k, v, score, p64, normalizer, kind, "reference", return_weights=True)
    p32 = [p.float() for p in p64]
    out, w = run(q.float(), k.float(), v.float(), score, p32, normalizer, kind, "math", return_weights=True)
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    if normalizer == "argmax":  # ties aside, the same one-hot; compare where the float32 argmax agrees
        agree = (w.argmax(-1) == ref_w.argmax(-1)).all()
        assert agree
    assert_close(out, ref_out, torch.float32)
    assert_close(w, ref_w, torch.float32)
    sums = ref_w.sum(-1)
    assert torch.all((sums - 1).abs() < 1e-9) or kind in ("fully_masked", "float_bias", "mask_mod")
    if kind == "fully_masked":
        assert torch.equal(ref_out[:, :, 1], torch.zeros_like(ref_out[:, :, 1]))


@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("normalizer", SMOOTH)
@pytest.mark.parametrize("score", SCORES)
def test_gradcheck(score, normalizer, kind):
    q, k, v = inputs(torch.float64, requires_grad=True)
    params = [p.requires_grad_(True) for p in make_params(score, torch.float64)]
    if score == "cosine":  # β must stay >= 0 under gradcheck's perturbation
        params[0].data += 0.5

    def f(q, k, v, *ps):
        return run(q, k, v, score, list(ps), normalizer, kind, "math")

    assert torch.autograd.gradcheck(f, (q, k, v, *params), eps=1e-6, atol=1e-5, fast_mode=True)


def test_fully_masked_gradients_are_zero_for_every_normalizer():
    for normalizer in SMOOTH + ["argmax", "sample"]:
        q, k, v = inputs(torch.float64, requires_grad=True)
        extra = {"return_log_prob": True} if normalizer == "sample" else {}
        res = run(q, k, v, "additive", make_params("additive", torch.float64), normalizer, "fully_masked", "math",
                  **extra)
        if normalizer == "sample":  # the draw has no gradient; its log-probability does
            out, lp = res
            assert torch.equal(lp[:, :, 1], torch.zeros_like(lp[:, :, 1]))
            (out.sum() + lp.sum()).backward()
        else:
            res.sum().backward()
        for t in (q, k, v):
            assert torch.isfinite(t.grad).all(), normalizer
        assert torch.equal(q.grad[:, :, 1], torch.zeros_like(q.grad[:, :, 1])), normalizer


def test_sample_frequencies_follow_softmax():
    s = torch.tensor([0.0, 1.0, 2.0, -1.0])
    N = 20000
    qs = torch.ones(N, 1, 1, 1)
    w = attention(qs, torch.ones(N, 1, 4, 1), torch.eye(4).expand(N, 1, 4, 4), score="dot", normalizer="sample",
                  score_mod=lambda sc, b, h, i, j: sc * 0 + s, generator=torch.Generator().manual_seed(0))
    freq = w.view(N, 4).mean(0)
    p = torch.softmax(s, -1)
    # 4 standard errors of a binomial proportion
    assert torch.all((freq - p).abs() < 4 * torch.sqrt(p * (1 - p) / N)), (freq, p)


def test_reinforce_estimator_is_unbiased():
    """E[R ∇ log p] = ∇ E[R]; for R = r[choice], ∇_s E[R] = p ∘ (r - pᵀr)."""
    s = torch.tensor([0.3, -0.2, 1.0], requires_grad=True)
    r = torch.tensor([1.0, 5.0, -2.0])
    N = 40000
    w, lp = attention(torch.ones(N, 1, 1, 1), torch.ones(N, 1, 3, 1), torch.eye(3).expand(N, 1, 3, 3),
                      score="dot", normalizer="sample", return_log_prob=True,
                      score_mod=lambda sc, b, h, i, j: sc * 0 + s, generator=torch.Generator().manual_seed(5))
    reward = (w.view(N, 3) * r).sum(-1)  # (N,)
    (-(reward.detach() * lp.view(N)).mean()).backward()
    p = torch.softmax(s.detach(), -1)
    exact = p * (r - (p * r).sum())
    torch.testing.assert_close(-s.grad, exact, atol=0.06, rtol=0)
