"""Conformance: every backend x score x mask kind x dtype it claims, against the float64 oracle.

For each combination the backend does not refuse (``not_supported_reasons``
empty), the output, the weights and the gradients (query, key, value, score
parameters, float mask) must match ``functional.reference.run`` in float64
within the per-dtype tolerances of ``tests/tolerances.py``. A backend that
claims a capability and gets it wrong fails here. Shapes are tiny; the
``chunked[2x3]`` runner forces 2x3 tiles so that tiling, block skipping and
the online softmax are exercised at these sizes.
"""

from __future__ import annotations

import zlib
from typing import Callable

import pytest
import torch

from attnkit.backends import BACKENDS, chunked_attention, get_backend
from attnkit.core import reference
from attnkit.core.masks import gaussian_bias, window_mask
from attnkit.core.scores import Score
from attnkit.functional import attention, build_spec
from tests.tolerances import TOL, assert_close

B, H, L, S, E, EV, D = 2, 2, 5, 7, 4, 3, 6


class NegSqDist(Score):
    """A user score the library has never seen: ``score = -|q - k|²`` (an RBF kernel's log)."""

    name = "neg_sq_dist"

    @staticmethod
    def pairwise(qp, kp, *params):
        return -((qp.unsqueeze(-2) - kp.unsqueeze(-3)) ** 2).sum(-1)  # (..., L, S)


def make_score(name: str, dtype: torch.dtype, g: torch.Generator):
    """(score, score_params, parameter tensors that should get gradients)."""
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_()  # noqa: E731
    if name == "general":
        w = r(E, E)
        return "general", {"weight": w}, [w]
    if name == "additive":
        p = {"w_q": r(D, E), "w_k": r(D, E), "v": r(D), "bias": r(D)}
        return "additive", p, list(p.values())
    if name == "additive_per_head":
        p = {"w_q": r(H, D, E), "w_k": r(H, D, E), "v": r(H, D)}
        return "additive", p, list(p.values())
    if name == "location":
        w = r(S + 2, E)
        return "location", {"weight": w}, [w]
    if name == "cosine":
        return "cosine", {"beta": 2.5}, []
    if name == "user":
        return NegSqDist(), None, []
    return name, None, []


SCORES = ["dot", "scaled_dot", "general", "additive", "additive_per_head", "cosine", "location", "user"]
MASKS = ["none", "padding", "causal", "causal_bottom_right", "window", "empty_rows", "float_bias", "gaussian",
         "mask_mod", "score_mod"]


def window_mod(b, h, q_idx, kv_idx):
    """mask_mod: a local window |i - j| <= 1 (empty rows do not arise: L < S)."""
    return (q_idx - kv_idx).abs() <= 1


def alibi_mod(score, b, h, q_idx, kv_idx):
    """score_mod: ALiBi-style per-head distance penalty (Press et al. 2021, arXiv:2108.12409)."""
    return score - 0.25 * (h + 1) * (q_idx - kv_idx).abs()


MODS = {"mask_mod": {"mask_mod": window_mod}, "score_mod": {"score_mod": alibi_mod}}


def make_mask(kind: str, dtype: torch.dtype, g: torch.Generator) -> tuple[torch.Tensor | None, object]:
    """(mask, causal) for a mask kind; float masks require grad."""
    if kind == "padding":
        lengths = torch.tensor([S, 3])
        return (torch.arange(S) < lengths[:, None]).view(B, 1, 1, S), False
    if kind == "causal":
        return None, True
    if kind == "causal_bottom_right":
        return None, "bottom_right"
    if kind == "window":
        return window_mask(L, S, 1), False
    if kind == "empty_rows":
        m = torch.rand(B, H, L, S, generator=g) > 0.4
        m[0, 1, 2] = False  # one row with no allowed key
        m[1, :, 0] = False  # a row empty in every head
        return m, False
    if kind == "float_bias":
        bias = torch.randn(B, H, L, S, generator=g, dtype=torch.float64)
        bias[1, 0, 3, :2] = float("-inf")
        return bias.to(dtype).requires_grad_(), False
    if kind == "gaussian":
        centers = torch.tensor([0.5, 1.5, 3.0, 4.0, 6.0], dtype=torch.float64)
        return gaussian_bias(S, centers, 1.0).to(dtype).requires_grad_(), False  # (L, S)
    return None, False


def run_chunked_tiled(spec):
    return chunked_attention(spec, block_q=2, block_k=3)


RUNNERS: dict[str, Callable] = {name: BACKENDS[name].forward for name in BACKENDS}
RUNNERS["chunked[2x3]"] = run_chunked_tiled
DTYPES = [torch.float64, torch.float32, torch.bfloat16]


def _grads(out, w, tensors, go, gw):
    loss = (out.double() * go).sum()
    if w is not None:
        loss = loss + (w.double() * gw).sum()
    return torch.autograd.grad(loss, tensors, allow_unused=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("mask_kind", MASKS)
@pytest.mark.parametrize("score_name", SCORES)
@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_backend_matches_reference(runner, score_name, mask_kind, dtype):
    backend = get_backend("chunked" if runner.startswith("chunked") else runner)
    g = torch.Generator().manual_seed(zlib.crc32(f"{score_name}/{mask_kind}".encode()))
    q64 = torch.randn(B, H, L, E, generator=g, dtype=torch.float64)
    k64 = torch.randn(B, H, S, E, generator=g, dtype=torch.float64)
    v64 = torch.randn(B, H, S, EV, generator=g, dtype=torch.float64)
    score, params64, ptensors64 = make_score(score_name, torch.float64, torch.Generator().manual_seed(1))
    score_d, params_d, ptensors_d = make_score(score_name, dtype, torch.Generator().manual_seed(1))
    mask64, causal = make_mask(mask_kind, torch.float64, torch.Generator().manual_seed(2))
    mask_d, _ = make_mask(mask_kind, dtype, torch.Generator().manual_seed(2))
    want_weights = backend.supports_weights

    q, k, v = (t.to(dtype).requires_grad_() for t in (q64, k64, v64))
    mods = MODS.get(mask_kind, {})
    spec = build_spec(q, k, v, score=score_d, score_params=params_d, mask=mask_d, causal=causal,
                      return_weights=want_weights, **mods)
    reasons = backend.not_supported_reasons(spec)
    if reasons:
        pytest.skip(f"{runner} refuses: {'; '.join(reasons)}")
    for t in (q64, k64, v64):
        t.requires_grad_()
    spec64 = build_spec(q64, k64, v64, score=score, score_params=params64, mask=mask64, causal=causal,
                        return_weights=want_weights, **mods)
    ref = reference.run(spec64)
    got = RUNNERS[runner](spec)

    assert got.output.dtype == dtype
    assert torch.isfinite(got.output).all()
    assert_close(got.output, ref.output, dtype)
    if want_weights:
        assert got.weights is not None and got.weights.shape == (B, H, L, S)
        assert_close(got.weights, ref.weights, dtype)

    go = torch.randn(B, H, L, EV, generator=g, dtype=torch.float64)
    gw = torch.randn(B, H, L, S, generator=g, dtype=torch.float64)
    float_mask = mask_d is not None and mask_d.is_floating_point()
    ins = [q, k, v, *ptensors_d] + ([mask_d] if float_mask else [])
    ins64 = [q64, k64, v64, *ptensors64] + ([mask64] if float_mask else [])
    got_g = _grads(got.output, got.weights, ins, go, gw)
    ref_g = _grads(ref.output, ref.weights, ins64, go, gw)
    rtol, atol = TOL[dtype]
    for i, (a, b) in enumerate(zip(got_g, ref_g)):
        b = torch.zeros_like(ins64[i]) if b is None else b
        a = torch.zeros_like(ins[i]) if a is None else a
        assert torch.isfinite(a).all(), f"input {i}: non-finite gradient"
        scale = max(1.0, float(b.abs().max()))  # gradients sum many terms: tolerance relative to their size
        torch.testing.assert_close(a.double(), b, rtol=rtol * 4, atol=atol * 4 * scale, msg=lambda m: f"grad {i}: {m}")


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_empty_rows_give_zero_output_weights_and_grads(runner):
    """DESIGN.md: a row with no allowed key gives output 0, weights 0, finite zero gradients."""
    backend = get_backend("chunked" if runner.startswith("chunked") else runner)
    q = torch.randn(B, H, L, E, requires_grad=True)
    k = torch.randn(B, H, S, E, requires_grad=True)
    v = torch.randn(B, H, S, EV, requires_grad=True)
    mask = torch.ones(B, 1, L, S, dtype=torch.bool)
    mask[0, 0, 1] = False
    spec = build_spec(q, k, v, mask=mask, return_weights=backend.supports_weights)
    if backend.not_supported_reasons(spec):
        pytest.skip("refused")
    r = RUNNERS[runner](spec)
    assert torch.equal(r.output[0, :, 1], torch.zeros(H, EV))
    if r.weights is not None:
        assert torch.equal(r.weights[0, :, 1], torch.zeros(H, S))
    (r.output.sum() + (0 if r.weights is None else r.weights.sum())).backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(q.grad[0, :, 1], torch.zeros(H, E))


@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_grouped_query_attention(runner):
    """H = 4 query heads share Hk = 2 key/value heads."""
    backend = get_backend("chunked" if runner.startswith("chunked") else runner)
    q = torch.randn(B, 4, L, E, dtype=torch.float64, requires_grad=True)
    k = torch.randn(B, 2, S, E, dtype=torch.float64, requires_grad=True)
    v = torch.randn(B, 2, S, EV, dtype=torch.float64, requires_grad=True)
    spec = build_spec(q, k, v, causal=True)
    if backend.not_supported_reasons(spec):
        pytest.skip("refused")
    out = RUNNERS[runner](spec).output
    ref = reference.run(spec).output
    assert_close(out, ref)
    ga = torch.autograd.grad(out.sum(), (q, k, v))
    gb = torch.autograd.grad(ref.sum(), (q, k, v))
    for a, b in zip(ga, gb):
        assert_close(a, b)


# --- edge inputs: the same rule on every backend (README, "The functional core") ---


def _runner_backend(runner):
    return get_backend("chunked" if runner.startswith("chunked") else runner)


@pytest.mark.parametrize("shape", [(S,), ()], ids=["key_mask_1d", "scalar_0d"])
@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_one_dim_and_scalar_masks_broadcast_like_sdpa(runner, shape):
    """A (S,) mask is one key mask for every batch, head and query; a 0-d mask applies everywhere
    (torch SDPA's broadcasting). Each equals the (B, H, L, S) mask it broadcasts to."""
    backend = _runner_backend(runner)
    g = torch.Generator().manual_seed(3)
    q = torch.randn(B, H, L, E, generator=g)
    k = torch.randn(B, H, S, E, generator=g)
    v = torch.randn(B, H, S, EV, generator=g)
    cases = [torch.tensor([True, False, True, True, False, True, True]), torch.arange(S) * -0.5] if shape else \
        [torch.tensor(True), torch.tensor(False), torch.tensor(-2.0)]
    for m in cases:
        assert m.shape == shape
        spec = build_spec(q, k, v, mask=m, return_weights=backend.supports_weights)
        if backend.not_supported_reasons(spec):
            pytest.skip(f"{runner} refuses")
        got = RUNNERS[runner](spec)
        ref = reference.run(build_spec(q.double(), k.double(), v.double(), mask=m.expand(B, H, L, S).clone(),
                                       return_weights=True))
        assert_close(got.output, ref.output, torch.float32)
        if got.weights is not None:
            assert_close(got.weights, ref.weights, torch.float32)
    # hand-worked: the all-forbidding scalar gives output 0 (every row empty), the (S,) mask never
    # gives weight to keys 1 and 4
    if shape:
        w = RUNNERS[runner](build_spec(q, k, v, mask=cases[0], return_weights=True)).weights
        if w is not None:
            assert torch.equal(w[..., [1, 4]], torch.zeros(B, H, L, 2))
            torch.testing.assert_close(w.sum(-1), torch.ones(B, H, L))
    else:
        out = RUNNERS[runner](build_spec(q, k, v, mask=cases[1])).output
        assert torch.equal(out, torch.zeros(B, H, L, EV))


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax", "entmax15", "argmax", "sample", "gumbel"])
@pytest.mark.parametrize("score_name", ["scaled_dot", "additive", "location", "user"])
@pytest.mark.parametrize("backend", ["auto", *sorted(BACKENDS)])
def test_no_keys_gives_zeros_and_zero_gradients(backend, score_name, normalizer):
    """S = 0 is a call whose every row has no allowed key: output 0 (B, H, L, Ev), weights
    (B, H, L, 0), log_prob 0, finite zero gradients, whatever the backend, score, normalizer."""
    score, params, ptensors = make_score(score_name, torch.float32, torch.Generator().manual_seed(1))
    q = torch.randn(B, H, L, E, requires_grad=True)
    k = torch.randn(B, H, 0, E, requires_grad=True)
    v = torch.randn(B, H, 0, EV, requires_grad=True)
    stochastic = normalizer in ("sample", "gumbel")
    kwargs = dict(score=score, score_params=params, normalizer=normalizer, return_weights=True,
                  return_log_prob=stochastic, mask=torch.ones(B, 1, L, 1, dtype=torch.bool))
    if backend != "auto" and get_backend(backend).not_supported_reasons(build_spec(q, k, v, **kwargs)):
        with pytest.raises(ValueError, match=f"backend '{backend}' cannot run this call"):
            attention(q, k, v, backend=backend, **kwargs)
        return
    out, w, *lp = attention(q, k, v, backend=backend, **kwargs)
    assert torch.equal(out, torch.zeros(B, H, L, EV)) and w.shape == (B, H, L, 0)
    if stochastic:
        assert torch.equal(lp[0], torch.zeros(B, H, L))
    loss = out.sum() + w.sum() + (lp[0].sum() if stochastic else 0)
    grads = torch.autograd.grad(loss, [q, k, v, *ptensors], allow_unused=True)  # location never reads k
    assert torch.equal(grads[0], torch.zeros(B, H, L, E))  # q is always reached: a zero, not a missing, gradient
    for gr, t in zip(grads, [q, k, v, *ptensors]):
        assert gr is None or (gr.shape == t.shape and torch.equal(gr, torch.zeros_like(t)))


def test_no_keys_in_chunked_kernel_itself():
    """The kernel behind ``chunked``, called directly, follows the same rule (one empty key block)."""
    q = torch.randn(B, H, L, E, requires_grad=True)
    k, v = torch.randn(B, H, 0, E), torch.randn(B, H, 0, EV)
    r = chunked_attention(build_spec(q, k, v, return_weights=True))
    assert torch.equal(r.output, torch.zeros(B, H, L, EV)) and r.weights.shape == (B, H, L, 0)
    r.output.sum().backward()
    assert torch.equal(q.grad, torch.zeros(B, H, L, E))


@pytest.mark.parametrize("score_name", ["scaled_dot", "additive"])
@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_nan_in_gives_nan_out(runner, score_name):
    """NaN in, NaN out, never a silent 0: a NaN in query row i makes output row i NaN (other rows
    keep the reference's numbers); a NaN in a value every row attends makes every row NaN; a row
    with no allowed key stays 0 (the mask wins). check_finite=True refuses such inputs instead."""
    backend = _runner_backend(runner)
    g = torch.Generator().manual_seed(4)
    score, params, _ = make_score(score_name, torch.float32, torch.Generator().manual_seed(1))
    params = None if params is None else {n: t.detach() for n, t in params.items()}
    q = torch.randn(B, H, L, E, generator=g)
    k = torch.randn(B, H, S, E, generator=g)
    v = torch.randn(B, H, S, EV, generator=g)
    q_nan = q.clone()
    q_nan[0, 1, 2, 0] = float("nan")
    q_nan[1, 0, 3] = float("nan")  # row (1, 0, 3) has no allowed key below
    mask = torch.ones(B, 1, L, S, dtype=torch.bool)
    mask[1, 0, 3] = False
    ref = reference.run(build_spec(q, k, v, score=score, score_params=params, mask=mask, return_weights=True))
    rest = torch.ones(B, H, L, dtype=torch.bool)
    rest[0, 1, 2] = False
    for weights in (False, True):  # the fused path, and the path that also builds the weights
        spec = build_spec(q_nan, k, v, score=score, score_params=params, mask=mask, return_weights=weights)
        if backend.not_supported_reasons(spec):
            pytest.skip(f"{runner} refuses")
        got = RUNNERS[runner](spec)
        assert torch.isnan(got.output[0, 1, 2]).all()
        if weights:
            assert torch.isnan(got.weights[0, 1, 2]).all()
            assert torch.equal(got.weights[1, :, 3], torch.zeros(H, S))
        assert torch.equal(got.output[1, :, 3], torch.zeros(H, EV))
        assert_close(got.output[rest], ref.output[rest], torch.float32)

    v_nan = v.clone()
    v_nan[0, 0, 4, 1] = float("nan")
    got = RUNNERS[runner](build_spec(q, k, v_nan, score=score, score_params=params))
    assert torch.isnan(got.output[0, 0, :, 1]).all()
    assert torch.isfinite(got.output[1]).all() and torch.isfinite(got.output[0, 1]).all()
