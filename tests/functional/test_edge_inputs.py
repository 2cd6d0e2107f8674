"""Edge inputs through the public call: 1-D and 0-d masks, no keys (S = 0), NaN (README,
"The functional core"). The per-backend versions are in tests/backends/test_conformance.py."""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.functional import attention

B, H, L, S, E = 2, 2, 3, 4, 4


def test_one_dim_key_mask_on_the_default_path_by_hand():
    """keys (0, 1, 2, 3), mask (S,) = [T, F, T, F]: dot scores q·k with q = (1, 0, 0, 0) and
    k_s = s·e_0 are 0, 1, 2, 3; only keys 0 and 2 count: weights softmax([0, 2]) at 0 and 2."""
    q = torch.zeros(1, 1, 1, 4)
    q[..., 0] = 1.0
    k = torch.zeros(1, 1, 4, 4)
    k[0, 0, :, 0] = torch.arange(4.0)
    v = torch.eye(4).view(1, 1, 4, 4)
    m = torch.tensor([True, False, True, False])
    out, w = attention(q, k, v, score="dot", mask=m, return_weights=True)
    e2 = torch.exp(torch.tensor(2.0))
    want = torch.tensor([1 / (1 + e2), 0.0, e2 / (1 + e2), 0.0])
    torch.testing.assert_close(w.view(4), want)
    torch.testing.assert_close(out.view(4), want)  # v = identity: the output is the weights
    torch.testing.assert_close(attention(q, k, v, score="dot", mask=m), out)  # without weights (sdpa)


def test_scalar_masks_on_the_default_path():
    q, k, v = torch.randn(B, H, L, E), torch.randn(B, H, S, E), torch.randn(B, H, S, E)
    torch.testing.assert_close(attention(q, k, v, mask=torch.tensor(True)), attention(q, k, v))
    assert torch.equal(attention(q, k, v, mask=torch.tensor(False)), torch.zeros(B, H, L, E))
    torch.testing.assert_close(attention(q, k, v, mask=torch.tensor(3.0)), attention(q, k, v))  # a constant bias


def test_masks_that_do_not_broadcast_name_the_shapes_that_work():
    q, k = torch.randn(B, H, L, E), torch.randn(B, H, S, E)
    with pytest.raises(ValueError, match=r"mask has shape \(3,\).*use \(S,\) for one key mask"):
        attention(q, k, k, mask=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask has shape \(1, 1, 1, 1, 4\)"):
        attention(q, k, k, mask=torch.ones(1, 1, 1, 1, 4, dtype=torch.bool))


@pytest.mark.parametrize("three_d", [False, True])
def test_no_keys_on_the_default_path(three_d):
    q = torch.randn(B, H, L, E, requires_grad=True)
    k, v = torch.randn(B, H, 0, E), torch.randn(B, H, 0, 5)
    args = (q[:, 0], k[:, 0], v[:, 0]) if three_d else (q, k, v)
    out = attention(*args)
    assert torch.equal(out, torch.zeros(*out.shape[:-2], L, 5)) and out.dim() == (3 if three_d else 4)
    out.sum().backward()
    assert torch.equal(q.grad, torch.zeros_like(q))


def test_bahdanau_with_an_empty_source():
    att = attnkit.create("bahdanau", 6, key_dim=5)
    h = torch.randn(3, 6, requires_grad=True)
    out = att(h, torch.randn(3, 0, 5), key_allowed=torch.ones(3, 0, dtype=torch.bool), need_weights=True)
    assert torch.equal(out.context, torch.zeros(3, 5)) and out.weights.shape == (3, 0)
    out.context.sum().backward()
    assert torch.equal(h.grad, torch.zeros(3, 6))
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in att.parameters())


def test_nan_on_the_plain_call_gives_nan():
    """The plainest call (every Transformer layer's) keeps NaN in, NaN out, like every backend."""
    q, k, v = torch.randn(B, H, L, E), torch.randn(B, H, S, E), torch.randn(B, H, S, E)
    q[0, 1, 2, 3] = float("nan")
    for causal in (False, True):
        out = attention(q, k, v, causal=causal)
        assert torch.isnan(out[0, 1, 2]).all()
        rest = torch.ones(B, H, L, dtype=torch.bool)
        rest[0, 1, 2] = False
        assert torch.isfinite(out[rest]).all()


@pytest.mark.parametrize("normalizer", ["softmax", "sparsemax", "entmax15", "argmax", "sample", "gumbel"])
def test_nan_in_gives_nan_out_on_every_normalizer(normalizer):
    """A NaN query row gives a NaN output row (and NaN log_prob) whatever the normalizer; the
    other rows are untouched and a row with no allowed key stays 0."""
    stochastic = normalizer in ("sample", "gumbel")
    q, k, v = torch.randn(B, H, L, E), torch.randn(B, H, S, E), torch.randn(B, H, S, E)
    mask = torch.ones(B, 1, L, S, dtype=torch.bool)
    mask[1, 0, 0] = False
    q_nan = q.clone()
    q_nan[0, 1, 2, 3] = float("nan")
    q_nan[1, 0, 0] = float("nan")  # a row with no allowed key
    kw = dict(normalizer=normalizer, mask=mask, return_weights=True, return_log_prob=stochastic)
    out, w, *lp = attention(q_nan, k, v, generator=torch.Generator().manual_seed(0), **kw)
    ref, *_ = attention(q, k, v, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.isnan(out[0, 1, 2]).all() and torch.isnan(w[0, 1, 2]).all()
    assert torch.equal(out[1, :, 0], torch.zeros(H, E)) and torch.equal(w[1, :, 0], torch.zeros(H, S))
    rest = torch.ones(B, H, L, dtype=torch.bool)
    rest[0, 1, 2] = False
    torch.testing.assert_close(out[rest], ref[rest])
    if stochastic:
        assert torch.isnan(lp[0][0, 1, 2]) and torch.isfinite(lp[0][rest]).all()
