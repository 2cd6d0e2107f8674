"""Hand-computed numbers for the decoder-style mechanisms (Bahdanau, Luong, local, NTM, hard)."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.nn import (
    AdditiveAttention,
    ContentAttention,
    HardAttention,
    LearnedBaseline,
    LocalAttention,
    LuongAttention,
    MovingAverageBaseline,
    SelfAttention,
    circular_shift,
    ntm_address,
    reinforce_loss,
    sharpen,
)

D64 = torch.float64


def t(x):
    return torch.tensor(x, dtype=D64)


# ---------------------------------------------------------------- Bahdanau


def test_bahdanau_hand_numbers():
    att = AdditiveAttention(1, dtype=D64)
    with torch.no_grad():
        att.w_q.fill_(1.0), att.w_k.fill_(1.0), att.v.fill_(1.0)
    q, k = t([[[0.0]]]), t([[[0.0], [1.0]]])  # e = [tanh 0, tanh 1] = [0, 0.76159]
    out = att(q, k, need_weights=True)
    a1 = math.exp(math.tanh(1)) / (1 + math.exp(math.tanh(1)))  # 0.681693
    torch.testing.assert_close(out.weights, t([[[1 - a1, a1]]]))
    torch.testing.assert_close(out.context, t([[[a1]]]))  # Σ α_s k_s = α_2 · 1


def test_bahdanau_weight_normalisation():
    att = AdditiveAttention(2, hidden_dim=2, normalize=True, dtype=D64)
    assert att.g.item() == pytest.approx(math.sqrt(1 / 2))  # TF-Addons' initial g
    with torch.no_grad():
        att.w_q.copy_(torch.eye(2)), att.w_k.copy_(torch.eye(2)), att.v.copy_(t([3.0, 4.0]))
        att.g.fill_(1.0), att.bias.copy_(t([0.5, -0.5]))
    q, k = t([[[1.0, 0.0]]]), t([[[0.0, 0.0], [0.0, 2.0]]])
    v = t([0.6, 0.8])  # g · v / |v|
    e = [float(v @ torch.tanh(q[0, 0] + k[0, s] + t([0.5, -0.5]))) for s in range(2)]
    w = torch.softmax(t(e), 0)
    torch.testing.assert_close(att(q, k, need_weights=True).weights[0, 0], w)


# ---------------------------------------------------------------- Luong


def test_luong_general_with_identity_is_dot_and_combine():
    g = LuongAttention(2, mode="general", combine=True, dtype=D64)
    d = LuongAttention(2, mode="dot", dtype=D64)
    with torch.no_grad():
        g.weight.copy_(torch.eye(2))
    q, k = t([[[1.0, 2.0]]]), t([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    w = torch.softmax(t([1.0, 2.0, 3.0]), 0)  # h·h̄_s
    dot = d(q, k, need_weights=True)
    torch.testing.assert_close(dot.weights[0, 0], w)
    c = w @ k[0]
    h_tilde = torch.tanh(g.w_c.weight @ torch.cat([c, q[0, 0]]))  # tanh(W_c [c; h])
    torch.testing.assert_close(g(q, k).context[0, 0], h_tilde)


def test_luong_location_ignores_keys_and_checks_length():
    m = LuongAttention(3, mode="location", max_source_len=4, dtype=D64)
    q = torch.randn(2, 1, 3, dtype=D64)
    a = m(q, torch.randn(2, 4, 3, dtype=D64), need_weights=True).weights
    b = m(q, torch.randn(2, 4, 3, dtype=D64), need_weights=True).weights
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[0, 0], torch.softmax(m.weight @ q[0, 0], 0))
    with pytest.raises(ValueError, match="max_source_len=4"):
        m(q, torch.randn(2, 5, 3, dtype=D64))


def test_luong_construction_errors():
    with pytest.raises(ValueError, match="mode='dot' needs key_dim == query_dim"):
        LuongAttention(4, key_dim=6, mode="dot")
    with pytest.raises(ValueError, match="mode must be one of"):
        LuongAttention(4, mode="bilinear")
    with pytest.raises(ValueError, match="max_source_len"):
        LuongAttention(4, mode="location")


def test_decoder_call_errors():
    m = AdditiveAttention(4, key_dim=6)
    with pytest.raises(ValueError, match="keys have 5 features but the layer was built with key_dim=6"):
        m(torch.randn(2, 4), torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="key_allowed must be a bool tensor of shape \\(B, S\\) = \\(2, 3\\)"):
        m(torch.randn(2, 4), torch.randn(2, 3, 6), key_allowed=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="query has 3 features"):
        m(torch.randn(2, 3), torch.randn(2, 3, 6))


# ---------------------------------------------------------------- local


def test_local_m_window_follows_step():
    m = LocalAttention(2, mode="monotonic", half_width=1, score="dot", dtype=D64)
    q, k = torch.randn(1, 2, dtype=D64), torch.randn(1, 6, 2, dtype=D64)
    w = m(q, k, step=2, need_weights=True).weights[0]  # window 1..3
    assert torch.all(w[[0, 4, 5]] == 0) and torch.all(w[1:4] > 0)
    torch.testing.assert_close(w.sum(), t(1.0))
    torch.testing.assert_close(w[1:4], torch.softmax(k[0, 1:4] @ q[0], 0))


def _local_p(gaussian: str) -> LocalAttention:
    m = LocalAttention(2, mode="predictive", half_width=2, score="dot", gaussian=gaussian, dtype=D64)
    with torch.no_grad():
        m.v_p.zero_()  # p_t = S · sigmoid(0) = S / 2
    return m


def test_local_p_gaussian_multiply_hand_numbers():
    m = _local_p("multiply")
    q, k = torch.randn(1, 2, dtype=D64), torch.zeros(1, 6, 2, dtype=D64)  # equal scores
    out = m(q, k, need_weights=True)
    assert out.state["centers"].item() == 3.0  # 6 · 0.5
    # softmax over the window s = 1..5 is 1/5 each, times exp(-(s-3)^2 / (2 σ^2)), σ = D/2 = 1; no renormalising
    g = [0.0, math.exp(-2), math.exp(-0.5), 1.0, math.exp(-0.5), math.exp(-2)]
    torch.testing.assert_close(out.weights[0], t([0.2 * x for x in g]))
    assert out.weights.sum() < 1


def test_local_p_gaussian_bias_renormalises():
    m = _local_p("bias")
    q, k = torch.randn(1, 2, dtype=D64), torch.zeros(1, 6, 2, dtype=D64)
    w = m(q, k, need_weights=True).weights[0]
    z = 1 + 2 * math.exp(-0.5) + 2 * math.exp(-2)  # 2.4837
    e2, e05 = math.exp(-2), math.exp(-0.5)
    torch.testing.assert_close(w, t([0.0, e2 / z, e05 / z, 1 / z, e05 / z, e2 / z]))


def test_local_p_uses_real_length_and_learns_position():
    m = _local_p("multiply")
    km = torch.tensor([[True] * 4 + [False] * 2])
    out = m(torch.randn(1, 2, dtype=D64), torch.randn(1, 6, 2, dtype=D64), key_allowed=km, need_weights=True)
    assert out.state["centers"].item() == 2.0  # S = 4 real tokens
    assert torch.all(out.weights[0, 4:] == 0)
    m2 = LocalAttention(2, mode="predictive", half_width=2, score="dot", dtype=D64)
    m2(torch.randn(3, 2, dtype=D64), torch.randn(3, 6, 2, dtype=D64)).context.sum().backward()
    assert m2.w_p.grad.abs().sum() > 0  # p_t is trained through the Gaussian


def test_local_without_window_is_global():
    loc = LocalAttention(3, half_width=None, score="general", dtype=D64)
    glob = LuongAttention(3, mode="general", dtype=D64)
    glob.load_state_dict({"weight": loc.align.weight})
    q, k = torch.randn(2, 3, dtype=D64), torch.randn(2, 5, 3, dtype=D64)
    torch.testing.assert_close(loc(q, k).context, glob(q, k).context)


# ---------------------------------------------------------------- NTM


def test_ntm_circular_shift_hand_numbers():
    w = t([1.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(circular_shift(w, t([0.0, 0.0, 1.0])), t([0.0, 1.0, 0.0, 0.0]))  # shift +1
    torch.testing.assert_close(circular_shift(w, t([1.0, 0.0, 0.0])), t([0.0, 0.0, 0.0, 1.0]))  # -1 wraps around
    torch.testing.assert_close(circular_shift(t([0.0, 1.0, 0.0, 0.0]), t([0.5, 0.5, 0.0])), t([0.5, 0.5, 0.0, 0.0]))


def test_ntm_sharpen_hand_numbers():
    # [0.5, 0.25, 0.25]^2 = [0.25, 0.0625, 0.0625], / 0.375
    torch.testing.assert_close(sharpen(t([0.5, 0.25, 0.25]), 2.0), t([2 / 3, 1 / 6, 1 / 6]))
    torch.testing.assert_close(sharpen(t([0.5, 0.25, 0.25]), 1.0), t([0.5, 0.25, 0.25]))


def test_ntm_address_interpolates_then_shifts_then_sharpens():
    w_c, w_prev = t([0.0, 0.0, 1.0, 0.0]), t([1.0, 0.0, 0.0, 0.0])
    g, s, gamma = t([0.25]), t([0.0, 0.0, 1.0]), t([1.0])
    # w_g = 0.25 w_c + 0.75 w_prev = [0.75, 0, 0.25, 0]; shift +1 -> [0, 0.75, 0, 0.25]
    torch.testing.assert_close(ntm_address(w_c, w_prev, g, s, gamma), t([0.0, 0.75, 0.0, 0.25]))
    # gamma 2: [0, 0.5625, 0, 0.0625] / 0.625
    torch.testing.assert_close(ntm_address(w_c, w_prev, g, s, t([2.0])), t([0.0, 0.9, 0.0, 0.1]))


def test_content_attention_steps_with_state_equal_one_call():
    m = ContentAttention(3, key_dim=4, dtype=D64)
    q, mem = torch.randn(2, 5, 3, dtype=D64), torch.randn(2, 6, 4, dtype=D64)
    full = m(q, mem, need_weights=True)
    state, outs = None, []
    for step in range(5):
        o = m(q[:, step], mem, state=state, need_weights=True)
        state = o.state
        outs.append(o.context)
        torch.testing.assert_close(o.weights, full.weights[:, step])
    torch.testing.assert_close(torch.stack(outs, 1), full.context)
    torch.testing.assert_close(full.weights.sum(-1), torch.ones(2, 5, dtype=D64))


def test_content_only_addressing_is_softmax_of_beta_cosine():
    m = ContentAttention(2, location=False, dtype=D64)
    with torch.no_grad():
        m.key.weight.copy_(torch.eye(2)), m.key.bias.zero_()
        m.beta.weight.zero_(), m.beta.bias.fill_(math.log(math.e**2 - 1))  # softplus -> beta = 2
    mem = t([[[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]]])  # cosines with (1, 0): 1, 0, -1
    w = m(t([[1.0, 0.0]]), mem, need_weights=True).weights[0]
    torch.testing.assert_close(w, torch.softmax(t([2.0, 0.0, -2.0]), 0))


# ---------------------------------------------------------------- hard


def test_hard_sample_is_one_hot_with_its_log_prob():
    m = HardAttention(2, score="dot", dtype=D64)
    q, k = torch.randn(3, 2, dtype=D64), torch.randn(3, 5, 2, dtype=D64)
    out = m(q, k, need_weights=True, generator=torch.Generator().manual_seed(0))
    assert torch.all(out.weights.sum(-1) == 1) and torch.all((out.weights == 0) | (out.weights == 1))
    idx = out.weights.argmax(-1)
    logp = torch.log_softmax((k @ q.unsqueeze(-1)).squeeze(-1), -1).gather(-1, idx[:, None]).squeeze(-1)
    torch.testing.assert_close(out.log_prob, logp)
    torch.testing.assert_close(out.context, k[torch.arange(3), idx])
    m.eval()  # argmax in eval
    want = (k @ q.unsqueeze(-1)).squeeze(-1).argmax(-1)
    torch.testing.assert_close(m(q, k, need_weights=True).weights.argmax(-1), want)


def test_hard_sampling_follows_the_softmax():
    m = HardAttention(1, score="dot", dtype=D64)
    q, k = t([[1.0]]).expand(4000, 1), t([[[0.0], [1.0]]]).expand(4000, 2, 1)
    w = m(q, k, need_weights=True, generator=torch.Generator().manual_seed(1)).weights
    p1 = math.e / (1 + math.e)  # 0.731
    assert abs(w[:, 1].mean().item() - p1) < 0.03


def test_reinforce_loss_hand_numbers_and_baselines():
    lp = t([-1.0, -2.0]).requires_grad_(True)
    r = t([1.0, 0.0])
    assert reinforce_loss(lp, r).item() == pytest.approx(0.5)  # -mean([1·-1, 0·-2])
    ma = MovingAverageBaseline(0.9)
    b = ma(r)  # first call: the batch mean 0.5; advantages [0.5, -0.5]
    assert reinforce_loss(lp, r, b).item() == pytest.approx(-0.25)  # -mean([-0.5, 1.0])
    assert ma.value.item() == pytest.approx(0.5)
    ma(t([2.0, 2.0]))
    assert ma.value.item() == pytest.approx(0.9 * 0.5 + 0.1 * 2.0)
    # per-step log-probs are summed into the trajectory's
    assert reinforce_loss(t([[-1.0, -1.0]]), t([1.0])).item() == pytest.approx(2.0)
    # a learned baseline is fit by (R - b)^2 and gets a gradient; the advantage does not
    lb = LearnedBaseline(3, dtype=D64)
    feats = torch.randn(2, 3, dtype=D64)
    loss = reinforce_loss(lp, r, lb(feats), entropy=t([0.7, 0.7]), entropy_weight=0.1)
    assert loss.item() == pytest.approx(0.5 + 0.5 - 0.07)  # b = 0 at init: 0.5 + mean(R²) - 0.1·0.7
    loss.backward()
    assert lb.linear.bias.grad is not None and lb.linear.bias.grad.item() == pytest.approx(-1.0)  # d/db mean((R-b)^2)
    with pytest.raises(ValueError, match="do not match"):
        reinforce_loss(t([1.0, 2.0, 3.0]), t([1.0, 2.0]))


def test_hard_entropy_and_reinforce_trains_scores():
    m = HardAttention(2, score="general", dtype=D64)
    q, k = torch.randn(4, 2, dtype=D64), torch.randn(4, 5, 2, dtype=D64)
    h = m.entropy(q, k)
    assert h.shape == (4,) and torch.all(h > 0) and torch.all(h <= math.log(5) + 1e-9)
    out = m(q, k)
    reinforce_loss(out.log_prob, torch.ones(4, dtype=D64), entropy=h, entropy_weight=0.01).backward()
    assert m.align.weight.grad.abs().sum() > 0


def test_gumbel_and_straight_through_have_gradients_to_the_scores():
    for mode in ("gumbel", "argmax"):
        m = HardAttention(2, mode=mode, score="general", dtype=D64)
        out = m(torch.randn(3, 2, dtype=D64), torch.randn(3, 4, 2, dtype=D64), need_weights=True)
        assert torch.all((out.weights.detach() == 0) | (out.weights.detach() == 1))
        out.context.square().sum().backward()
        assert m.align.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- self-attention


def test_self_attention_textbook_formula():
    m = SelfAttention(4, dtype=D64)
    x = torch.randn(2, 3, 4, dtype=D64)
    Q, K, V = x @ m.q_proj.weight.T, x @ m.k_proj.weight.T, x @ m.v_proj.weight.T
    y = torch.softmax(Q @ K.transpose(1, 2) / 2.0, -1) @ V
    torch.testing.assert_close(m(x).context, m.out_proj(y))
    mc = SelfAttention(4, causal=True, dtype=D64)
    w = mc(x, need_weights=True).weights
    assert torch.all(w[:, 0].triu(1) == 0)


@pytest.mark.parametrize("make", [lambda: AdditiveAttention(3, key_dim=4, dtype=D64),
                                  lambda: LuongAttention(3, key_dim=4, mode="concat", dtype=D64)])
def test_projected_keys_are_reused_across_steps(make):
    """W_k k is computed once per source and carried in the state (Bahdanau et al.'s footnote)."""
    m = make()
    q, k = torch.randn(2, 4, 3, dtype=D64), torch.randn(2, 6, 4, dtype=D64, requires_grad=True)
    km = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    full = m(q, k, key_allowed=km)
    state, ctx = None, []
    for step in range(4):
        out = m(q[:, step], k, key_allowed=km, step=step, state=state)
        if state is not None:
            assert out.state is state and out.state["projected_keys"] is state["projected_keys"]
        state = out.state
        ctx.append(out.context)
    torch.testing.assert_close(torch.stack(ctx, 1), full.context)
    g_steps = torch.autograd.grad(torch.stack(ctx, 1).sum(), [k, m.w_k])
    g_full = torch.autograd.grad(full.context.sum(), [k, m.w_k])
    for a, b in zip(g_steps, g_full):
        torch.testing.assert_close(a, b)
    # other keys, or W_k changed in place: projected again
    assert m(q[:, 0], k.detach().clone(), state=state).state is not state
    with torch.no_grad():
        m.w_k.mul_(2.0)
    assert m(q[:, 0], k, state=state).state is not state
