"""Numbers worked out by hand, one per score, normalizer and mask helper."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.core.normalize import Entmax15, Sparsemax
from attnkit.core.scores import Additive, Cosine, General, Location
from attnkit.functional import attention, masks

T = torch.tensor


def test_cat_sat_on_the_mat():
    # The=[0,0], cat=[0,1], sat=[1,1], on=[1,0], the=[0,0], mat=[1,0]; query "sat".
    # q·k = [0, 1, 2, 1, 0, 1]; scaled by 1/sqrt(2); exp = [1, e^.707, e^1.414, ...]
    E = T([[0, 0], [0, 1], [1, 1], [1, 0], [0, 0], [1, 0]], dtype=torch.float64)[None]  # (1, 6, 2)
    out, w = attention(E[:, 2:3], E, E, return_weights=True)
    a, b, c = 1.0, math.exp(1 / math.sqrt(2)), math.exp(2 / math.sqrt(2))
    z = 2 * a + 3 * b + c
    expected_w = T([a, b, c, b, a, b], dtype=torch.float64) / z
    torch.testing.assert_close(w[0, 0], expected_w)
    rounded = T([0.082, 0.166, 0.337, 0.166, 0.082, 0.166], dtype=torch.float64)
    torch.testing.assert_close(w[0, 0], rounded, atol=6e-4, rtol=0)
    torch.testing.assert_close(out[0, 0], T([(c + 2 * b) / z, (b + c) / z], dtype=torch.float64))
    assert [round(x, 1) for x in out[0, 0].tolist()] == [0.7, 0.5]


def test_dot_two_keys():
    q = T([[[1.0, 1.0]]])
    k = v = T([[[0.0, 1.0], [1.0, 1.0]]])
    out, w = attention(q, k, v, score="dot", return_weights=True)
    p = 1 / (1 + math.e)  # softmax([1, 2])[0]
    torch.testing.assert_close(w, T([[[p, 1 - p]]]))
    torch.testing.assert_close(out, T([[[1 - p, 1.0]]]))


def _weights(score, q, k, **kw):
    _, w = attention(q[None], k[None], k[None], score=score, return_weights=True, **kw)
    return w[0]


def test_general_score():
    # q W kᵀ with W = diag(2, 1): q=[1,0] -> [2, 0]·k
    W = T([[2.0, 0.0], [0.0, 1.0]])
    q, k = T([[1.0, 0.0]]), T([[1.0, 0.0], [0.0, 1.0]])
    w = _weights(General(W), q, k)
    torch.testing.assert_close(w, torch.softmax(T([[2.0, 0.0]]), -1))


def test_general_score_different_sizes():
    W = T([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # (E_q=2, E_k=3)
    q, k = T([[1.0, 2.0]]), T([[1.0, 1.0, 1.0], [0.0, 0.0, 3.0]])
    # q W = [1, 2, 1] -> scores [4, 3]
    w = _weights("general", q, k, score_params={"weight": W})
    torch.testing.assert_close(w, torch.softmax(T([[4.0, 3.0]]), -1))


def test_additive_score():
    # vᵀ tanh(q + k) with W_q = W_k = I, v = [1, 1]:
    # k1 = [0,0]: tanh(1) + tanh(0); k2 = [1,1]: tanh(2) + tanh(1)
    eye = torch.eye(2)
    sc = Additive(eye, eye, T([1.0, 1.0]))
    q, k = T([[1.0, 0.0]]), T([[0.0, 0.0], [1.0, 1.0]])
    raw = sc(q[None, None], k[None, None])[0, 0]
    torch.testing.assert_close(raw, T([[math.tanh(1), math.tanh(2) + math.tanh(1)]]))
    torch.testing.assert_close(_weights(sc, q, k), torch.softmax(raw, -1))


def test_additive_per_head_parameters_and_bias():
    H, D, E = 2, 3, 4
    w_q, w_k, v, b = torch.randn(H, D, E), torch.randn(H, D, E), torch.randn(H, D), torch.randn(H, D)
    q, k = torch.randn(1, H, 2, E), torch.randn(1, H, 5, E)
    got = Additive(w_q, w_k, v, b)(q, k)
    for h in range(H):
        qp = q[0, h] @ w_q[h].T + b[h]  # (2, D)
        kp = k[0, h] @ w_k[h].T  # (5, D)
        exp = torch.tanh(qp[:, None] + kp[None]) @ v[h]
        torch.testing.assert_close(got[0, h], exp)


def test_cosine_score_with_key_strength():
    # cos([1,0],[2,0]) = 1, cos([1,0],[0,3]) = 0, β = 2 -> scores [2, 0]
    q, k = T([[1.0, 0.0]]), T([[2.0, 0.0], [0.0, 3.0]])
    w = _weights(Cosine(2.0), q, k)
    torch.testing.assert_close(w, T([[1 / (1 + math.exp(-2)), 1 - 1 / (1 + math.exp(-2))]]))


def test_location_score_ignores_keys():
    Wa = T([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [9.0, 9.0]])  # S_max = 4
    q, k = T([[2.0, 3.0]]), torch.randn(3, 2)
    w = _weights(Location(Wa), q, k)  # scores [2, 3, 5]
    torch.testing.assert_close(w, torch.softmax(T([[2.0, 3.0, 5.0]]), -1))


def test_sparsemax_by_hand():
    # z = [1, .5, -1]: support {1, .5}, τ = (1.5 - 1)/2 = .25 -> [.75, .25, 0]
    w, _ = Sparsemax()(T([1.0, 0.5, -1.0]))
    torch.testing.assert_close(w, T([0.75, 0.25, 0.0]))


def test_entmax15_by_hand():
    # s = [1, 0]: x = s/2 - max/2 = [0, -.5]; ρ=2: mean -.25, mean² .125,
    # ss = 2(.125 - .0625) = .125, δ = (1 - .125)/2, τ = -.25 - sqrt(δ); w = (x - τ)²
    w, _ = Entmax15()(T([1.0, 0.0]))
    tau = -0.25 - math.sqrt(0.4375)
    torch.testing.assert_close(w, T([(0 - tau) ** 2, (-0.5 - tau) ** 2]))
    assert abs(float(w.sum()) - 1) < 1e-6
    w, _ = Entmax15()(T([2.0, 0.0]))  # τ = -1: [1, 0], sparse
    torch.testing.assert_close(w, T([1.0, 0.0]))


def test_argmax_is_one_hot_with_softmax_gradient():
    s = T([[0.5, 2.0, 1.0]], requires_grad=True)
    v = torch.eye(3)[None]  # values = one-hot rows: output = weights
    out = attention(s.new_ones(1, 1, 1), s.new_ones(1, 3, 1), v, score="dot", normalizer="argmax",
                    score_mod=lambda sc, b, h, i, j: sc * 0 + s.view(1, 1, 1, 3))
    torch.testing.assert_close(out[0], T([[0.0, 1.0, 0.0]]))
    g = T([[1.0, -1.0, 2.0]])
    (out[0] * g).sum().backward()
    p = torch.softmax(s.detach(), -1)
    torch.testing.assert_close(s.grad, p * (g - (p * g).sum(-1, keepdim=True)))


def test_masks_by_hand():
    assert masks.lengths_mask(T([1, 3]), 3).view(2, 3).tolist() == [[True, False, False], [True, True, True]]
    assert masks.causal_mask(2, 4, alignment="bottom_right").tolist() == [
        [True, True, True, False],
        [True, True, True, True],
    ]
    assert masks.causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert masks.window_mask(3, 5, 1).tolist() == [
        [True, True, False, False, False],
        [True, True, True, False, False],
        [False, True, True, True, False],
    ]
    # p_t = 2.6, D = 1: |s - 2.6| = [2.6, 1.6, .6, .4, 1.4] -> only s = 2, 3 within 1
    assert masks.window_mask(1, 5, 1, centers=T([2.6])).tolist() == [[False, False, True, True, False]]
    g = masks.gaussian_bias(3, T([1.0]), sigma=1.0)  # -(s-1)²/2
    torch.testing.assert_close(g, T([[-0.5, 0.0, -0.5]]))
    pad = masks.padding_mask(T([[False, True]]))  # torch convention: True = padding
    assert pad.view(-1).tolist() == [True, False]


def test_combine():
    a, b = T([True, False, True]), T([True, True, False])
    assert masks.combine(a, b).tolist() == [True, False, False]
    assert masks.combine(a, b, op="or").tolist() == [True, True, True]
    f = masks.combine(a, T([1.0, 2.0, 3.0]))
    assert f.tolist() == [1.0, float("-inf"), 3.0]
    assert masks.combine(None, None) is None


def test_causal_alignments_against_mask():
    q, k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
    for al in ("top_left", "bottom_right"):
        a = attention(q, k, v, causal=al)
        b = attention(q, k, v, mask=masks.causal_mask(3, 5, alignment=al))
        torch.testing.assert_close(a, b)


def test_gqa_equals_expanded_heads():
    q, k, v = torch.randn(2, 4, 3, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    a = attention(q, k, v)
    b = attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1))
    torch.testing.assert_close(a, b)


def test_score_mod_and_mask_mod_match_tensor_masks():
    q, k, v = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 4, 8), torch.randn(2, 2, 4, 8)
    i, j = torch.arange(4)[:, None], torch.arange(4)[None]
    alibi = -(i - j).abs().float()
    a = attention(q, k, v, score_mod=lambda s, b, h, qi, ki: s - (qi - ki).abs())
    torch.testing.assert_close(a, attention(q, k, v, mask=alibi))
    c = attention(q, k, v, mask_mod=lambda b, h, qi, ki: ki <= qi)
    torch.testing.assert_close(c, attention(q, k, v, causal=True))


def test_fully_masked_row_is_zero_not_nan():
    q, k, v = (torch.randn(1, 1, 2, 4, requires_grad=True) for _ in range(3))
    mask = T([[True, True], [False, False]])
    out, w = attention(q, k, v, mask=mask, return_weights=True)
    assert torch.equal(out[0, 0, 1], torch.zeros(4)) and torch.equal(w[0, 0, 1], torch.zeros(2))
    out.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(q.grad[0, 0, 1], torch.zeros(4))


def test_three_d_inputs_mean_one_head():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    out, w = attention(q, k, v, return_weights=True)
    assert out.shape == (2, 3, 6) and w.shape == (2, 3, 5)
    torch.testing.assert_close(out, attention(q[:, None], k[:, None], v[:, None])[:, 0])


def test_half_inputs_softmax_in_float32():
    q, k, v = (torch.randn(1, 2, 8, 16) for _ in range(3))
    ref = attention(q.double(), k.double(), v.double())
    for dt in (torch.float16,):
        out = attention(q.to(dt), k.to(dt), v.to(dt))
        assert out.dtype == dt
        torch.testing.assert_close(out.double(), ref, rtol=1e-2, atol=1e-2)


def test_dropout_is_reproducible_and_unbiased():
    q, k, v = torch.randn(1, 1, 64, 8), torch.randn(1, 1, 64, 8), torch.randn(1, 1, 64, 8)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = attention(q, k, v, dropout_p=0.5, generator=g1)
    b = attention(q, k, v, dropout_p=0.5, generator=g2)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, attention(q, k, v))
    # E[dropout(w)] = w: average many draws
    g = torch.Generator().manual_seed(0)
    qs = q.expand(400, 1, 64, 8)
    mean = attention(qs, k.expand_as(qs), v.expand_as(qs), dropout_p=0.3, generator=g).mean(0)
    torch.testing.assert_close(mean, attention(q, k, v)[0], atol=0.08, rtol=0)


@pytest.mark.parametrize("name", ["sample", "gumbel"])
def test_stochastic_returns_log_prob_of_the_choice(name):
    s = torch.randn(1, 1, 3, 5)
    q = torch.ones(1, 1, 3, 1)
    out, w, lp = attention(q, torch.ones(1, 1, 5, 1), torch.eye(5)[None, None], score="dot", normalizer=name,
                           score_mod=lambda sc, b, h, i, j: sc * 0 + s, return_weights=True,
                           return_log_prob=True, generator=torch.Generator().manual_seed(0))
    idx = w.argmax(-1)
    torch.testing.assert_close(lp, torch.log_softmax(s, -1).gather(-1, idx[..., None])[..., 0])
    if name == "sample":
        assert torch.equal(w.sum(-1), torch.ones(1, 1, 3)) and set(w.unique().tolist()) == {0.0, 1.0}


def test_user_score_class_by_name():
    from attnkit.core.scores import SCORES, Score, register_score

    @register_score("test_neg_l2")
    class NegL2(Score):
        """score(q, k) = -|q - k|²"""

        @staticmethod
        def pairwise(qp, kp, *params):
            return -((qp.unsqueeze(-2) - kp.unsqueeze(-3)) ** 2).sum(-1)  # (..., L, S)

    try:
        q, k = T([[0.0, 0.0]]), T([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
        w = _weights("test_neg_l2", q, k)  # scores [-1, -4, 0]
        torch.testing.assert_close(w, torch.softmax(T([[-1.0, -4.0, 0.0]]), -1))
    finally:
        SCORES.remove("test_neg_l2")
