"""sparsemax and 1.5-entmax against the reference implementations of Peters, Niculae &
Martins 2019 (arXiv:1905.05702; the ``entmax`` package): values and gradients, with ties,
entries sitting exactly at the threshold and masked (-inf) entries. And the rule for a
query with no allowed key given as a float (-inf) mask: zeros, finite zero gradients, on
every normalizer, log-probabilities included."""

from __future__ import annotations

import math

import entmax
import pytest
import torch

from attnkit.core.normalize import Entmax15, Sparsemax, logsumexp_safe
from attnkit.functional import attention

D64 = torch.float64
OURS = {"sparsemax": Sparsemax(), "entmax15": Entmax15()}
REFERENCE = {"sparsemax": entmax.sparsemax, "entmax15": entmax.entmax15}


def test_sparsemax_gradient_at_the_threshold_is_the_zero_entrys():
    # E = 1, so scale = 1 and the scores are q_i k_j: query 0 -> [2, 0], query 1 -> [1, 0].
    # [2, 0]: τ = 1, w = [1, 0]. [1, 0]: τ = 0, w = [1, 0], and the second score sits exactly at τ.
    # A zero entry has a zero Jacobian row and the support {0} has one entry, so dw/ds = 0 on
    # both rows: out = [0, 0] (w picks v_0 = 0) and d(out.sum())/dq = [0, 0] (the defect gave
    # [0, -3]: the entry at τ passed v_1 = 3 through, and -3 to s_0 through τ), dk = 0, dv = [2, 0].
    q = torch.tensor([[[2.0], [1.0]]], dtype=D64, requires_grad=True)  # (1, L=2, 1)
    k = torch.tensor([[[1.0], [0.0]]], dtype=D64, requires_grad=True)  # (1, S=2, 1)
    v = torch.tensor([[[0.0], [3.0]]], dtype=D64, requires_grad=True)
    out, w = attention(q, k, v, normalizer="sparsemax", return_weights=True)
    torch.testing.assert_close(w, torch.tensor([[[1.0, 0.0], [1.0, 0.0]]], dtype=D64))
    out.sum().backward()
    assert q.grad.flatten().tolist() == [0.0, 0.0]
    assert k.grad.flatten().tolist() == [0.0, 0.0]
    assert v.grad.flatten().tolist() == [2.0, 0.0]
    # and the reference agrees on the scores themselves
    s = torch.tensor([[1.0, 0.0]], dtype=D64, requires_grad=True)
    (g_ref,) = torch.autograd.grad((entmax.sparsemax(s, -1) * torch.tensor([0.0, 3.0], dtype=D64)).sum(), s)
    assert g_ref.flatten().tolist() == [0.0, 0.0]


def test_entmax15_gradient_on_ties_is_finite_and_exact():
    # scores [2, 2, 0, 0]: x = (s - 2)/2 = [0, 0, -1, -1]. ρ = 2: τ = -1/√2 <= 0, in the support;
    # ρ = 3: τ = -2/3 > -1, out. So w = [1/2, 1/2, 0, 0]. At ρ = 4 the variance term is exactly
    # 1 (δ = 0): sqrt's slope there made every gradient NaN. With r = √w = [1/√2, 1/√2, 0, 0],
    # ds = r ∘ (g - Σ r g / Σ r) = [-√2/4, √2/4, 0, 0] for g = v = [1, 2, 3, 4]; dk_j = q ds_j, dq = Σ k_j ds_j = 0.
    q = torch.tensor([[[1.0]]], dtype=D64, requires_grad=True)  # (1, 1, 1)
    k = torch.tensor([[[2.0], [2.0], [0.0], [0.0]]], dtype=D64, requires_grad=True)  # (1, 4, 1)
    v = torch.tensor([[[1.0], [2.0], [3.0], [4.0]]], dtype=D64, requires_grad=True)
    out, w = attention(q, k, v, normalizer="entmax15", return_weights=True)
    torch.testing.assert_close(w, torch.tensor([[[0.5, 0.5, 0.0, 0.0]]], dtype=D64))
    torch.testing.assert_close(out, torch.tensor([[[1.5]]], dtype=D64))
    out.sum().backward()
    r = math.sqrt(2) / 4
    torch.testing.assert_close(k.grad.flatten(), torch.tensor([-r, r, 0.0, 0.0], dtype=D64))
    torch.testing.assert_close(q.grad.flatten(), torch.zeros(1, dtype=D64))
    torch.testing.assert_close(v.grad.flatten(), torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=D64))


def _scores(case: str, dtype: torch.dtype) -> torch.Tensor:
    """(64, 7) rows of scores; every row keeps at least one finite entry."""
    g = torch.Generator().manual_seed(7)
    if case == "random":
        s = 2 * torch.randn(64, 7, generator=g, dtype=D64)
    elif case == "ties":  # integers: ties in the support, entries exactly at τ (sparsemax [1, 0]), δ = 0 (entmax)
        s = torch.randint(-2, 3, (64, 7), generator=g).to(D64)
    elif case == "half_integers":
        s = torch.randint(-4, 5, (64, 7), generator=g).to(D64) / 2
    elif case in ("masked", "masked_ties"):
        s = 2 * torch.randn(64, 7, generator=g, dtype=D64)
        if case == "masked_ties":
            s = torch.randint(-2, 3, (64, 7), generator=g).to(D64)
        s = s.masked_fill(torch.rand(64, 7, generator=g) < 0.4, float("-inf"))
        s[:, 3] = torch.where(torch.isfinite(s).any(-1), s[:, 3], torch.zeros(64, dtype=D64))
        s[0, 0], s[0, 1:] = 0.5, float("-inf")  # one allowed key
    else:
        raise AssertionError(case)
    s[1] = 0.0  # all tied
    return s.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", ["random", "ties", "half_integers", "masked", "masked_ties"])
@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_matches_the_entmax_package_in_values_and_gradients(name, case, dtype):
    s = _scores(case, dtype)
    upstream = torch.randn(s.shape, generator=torch.Generator().manual_seed(8), dtype=D64).to(dtype)
    ours_in, ref_in = s.clone().requires_grad_(), s.clone().requires_grad_()
    w, _ = OURS[name](ours_in)
    w_ref = REFERENCE[name](ref_in, -1)
    (g,) = torch.autograd.grad((w * upstream).sum(), ours_in)
    (g_ref,) = torch.autograd.grad((w_ref * upstream).sum(), ref_in)
    assert torch.isfinite(w).all() and torch.isfinite(g).all()
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(w, w_ref, **tol)
    torch.testing.assert_close(g, g_ref, **tol)
    assert torch.equal(w == 0, w_ref == 0)  # the same support, entry for entry
    masked = ~torch.isfinite(s)
    assert torch.equal(w[masked], torch.zeros_like(w[masked])) and torch.equal(g[masked], torch.zeros_like(g[masked]))


@pytest.mark.parametrize("name", ["sparsemax", "entmax15"])
def test_attention_with_masks_matches_the_entmax_package(name):
    """Through attention(): a boolean and a float mask, gradients to q, k, v and to the float mask."""
    g = torch.Generator().manual_seed(3)
    B, H, L, S, E = 2, 2, 5, 6, 3
    q, k, v = (torch.randint(-2, 3, (B, H, n, E), generator=g).to(D64) for n in (L, S, S))  # integer: ties
    allowed = torch.rand(B, 1, L, S, generator=g) > 0.3
    allowed[..., 0] = True
    bias = torch.randn(L, S, generator=g, dtype=D64).round()
    bias[2, 4] = float("-inf")
    upstream = torch.randn(B, H, L, 2 * E, generator=g, dtype=D64)

    def ours(q, k, v, bias):  # (B, H, L, 2E): the boolean mask, then the float mask
        return torch.cat([attention(q, k, v, normalizer=name, mask=m) for m in (allowed, bias)], -1)

    def reference(q, k, v, bias):
        s = q @ k.transpose(-1, -2) / math.sqrt(E)  # (B, H, L, S), scaled_dot
        masked = (s.masked_fill(~allowed, float("-inf")), s + bias)
        return torch.cat([REFERENCE[name](t, -1) @ v for t in masked], -1)

    inputs = [t.clone().requires_grad_() for t in (q, k, v, bias)]
    ref_inputs = [t.clone().requires_grad_() for t in (q, k, v, bias)]
    out, out_ref = ours(*inputs), reference(*ref_inputs)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad((out * upstream).sum(), inputs)
    ref_grads = torch.autograd.grad((out_ref * upstream).sum(), ref_inputs)
    for a, b, what in zip(grads, ref_grads, "qkvm"):
        assert torch.isfinite(a).all(), what
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=what)


def test_logsumexp_safe_of_an_empty_row_has_zero_gradients():
    s = torch.tensor([[0.0, 1.0], [float("-inf"), float("-inf")]], dtype=D64, requires_grad=True)
    lse = logsumexp_safe(s)
    assert lse[0].item() == pytest.approx(math.log(1 + math.e)) and lse[1].item() == float("-inf")
    # what log-probabilities do with it: use it only where it is finite
    (torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse)).sum()).backward()
    torch.testing.assert_close(s.grad, torch.tensor([[1 / (1 + math.e), math.e / (1 + math.e)], [0.0, 0.0]],
                                                    dtype=D64))


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax", "entmax15", "argmax", "sample", "gumbel",
                                        {"name": "gumbel", "hard": True}])
def test_fully_masked_row_as_a_float_mask_gives_zeros_and_finite_gradients(normalizer):
    """Query 1 has no allowed key, given as a float mask of -inf (issue 16): output 0,
    log-probability 0, gradients finite and 0 on that row, on every normalizer."""
    g = torch.Generator().manual_seed(0)
    B, H, L, S, E = 2, 2, 3, 4, 3
    q, k, v = (torch.randn(B, H, n, E, generator=g, dtype=D64, requires_grad=True) for n in (L, S, S))
    bias = torch.randn(L, S, generator=g, dtype=D64)
    bias[1] = float("-inf")
    bias[0, 2] = float("-inf")
    bias.requires_grad_()
    params = {}
    if isinstance(normalizer, dict):
        params = {"hard": normalizer["hard"]}
        normalizer = normalizer["name"]
    stochastic = normalizer in ("sample", "gumbel")
    res = attention(q, k, v, mask=bias, normalizer=normalizer, normalizer_params=params,
                    return_log_prob=stochastic, generator=torch.Generator().manual_seed(1))
    out, lp = res if stochastic else (res, None)
    assert torch.equal(out[:, :, 1], torch.zeros_like(out[:, :, 1]))
    loss = (out * torch.randn(out.shape, generator=g, dtype=D64)).sum()
    if lp is not None:
        assert torch.equal(lp[:, :, 1], torch.zeros_like(lp[:, :, 1])) and torch.isfinite(lp).all()
        loss = loss + (lp * torch.randn(lp.shape, generator=g, dtype=D64)).sum()
    loss.backward()
    for t, what in ((q, "query"), (k, "key"), (v, "value"), (bias, "mask")):
        assert torch.isfinite(t.grad).all(), what
    assert torch.equal(q.grad[:, :, 1], torch.zeros_like(q.grad[:, :, 1]))
    assert torch.equal(bias.grad[1], torch.zeros_like(bias.grad[1]))
    if lp is not None:  # the log-probabilities reach the scores of the rows that have keys
        assert q.grad[:, :, 0].abs().sum() > 0
