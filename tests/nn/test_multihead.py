"""MultiHeadAttention: torch parity, KV cache, GQA, RoPE, ALiBi, errors, the plain call."""

from __future__ import annotations

import pytest
import torch

import attnkit.nn.multihead as multihead
from attnkit.backends import restrict_backends
from attnkit.core import reference
from attnkit.functional import attention, build_spec
from attnkit.nn import ALiBi, KVCache, MultiHeadAttention, RotaryEmbedding
from attnkit.nn._common import record_specs

D64 = torch.float64


def _copy_from_torch(ours: MultiHeadAttention, ref: torch.nn.MultiheadAttention) -> None:
    E = ref.embed_dim
    with torch.no_grad():
        w = ref.in_proj_weight
        ours.q_proj.weight.copy_(w[:E])
        ours.k_proj.weight.copy_(w[E : 2 * E])
        ours.v_proj.weight.copy_(w[2 * E :])
        ours.q_proj.bias.copy_(ref.in_proj_bias[:E])
        ours.k_proj.bias.copy_(ref.in_proj_bias[E : 2 * E])
        ours.v_proj.bias.copy_(ref.in_proj_bias[2 * E :])
        ours.out_proj.load_state_dict(ref.out_proj.state_dict())


@pytest.mark.parametrize("causal", [False, True])
def test_matches_torch_multihead_attention(causal):
    ref = torch.nn.MultiheadAttention(12, 3, batch_first=True, dtype=D64)
    ours = MultiHeadAttention(12, num_heads=3, dtype=D64)
    _copy_from_torch(ours, ref)
    x = torch.randn(2, 5, 12, dtype=D64)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    cm = torch.ones(5, 5, dtype=torch.bool).triu(1) if causal else None  # torch: True = ignore
    r, rw = ref(x, x, x, key_padding_mask=pad, attn_mask=cm, average_attn_weights=False)
    o = ours(x, key_allowed=~pad, causal=causal, need_weights=True)
    torch.testing.assert_close(o.context, r)
    torch.testing.assert_close(o.weights, rw)


@pytest.mark.parametrize(
    "num_kv_heads,rope,alibi", [(4, False, False), (2, True, False), (1, False, True), (2, False, True)]
)
def test_kv_cache_steps_equal_one_causal_forward(num_kv_heads, rope, alibi):
    positional = RotaryEmbedding(4) if rope else ALiBi(4) if alibi else None
    m = MultiHeadAttention(16, num_heads=4, num_kv_heads=num_kv_heads, positional=positional, dtype=D64)
    x = torch.randn(2, 7, 16, dtype=D64)
    full = m(x, causal=True).context
    cache = m.new_cache(2, 7)
    outs = [m(x[:, :3], causal=True, cache=cache).context]  # prefill 3 positions
    for t in range(3, 7):
        out = m(x[:, t : t + 1], causal=True, cache=cache)
        assert out.state is cache
        outs.append(out.context)
    assert cache.length == 7
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-10, atol=1e-10)


def test_kv_cache_decoder_style_state_and_one_step_query():
    m = MultiHeadAttention(8, num_heads=2, dtype=D64)
    x = torch.randn(3, 4, 8, dtype=D64)
    full = m(x, causal=True).context
    state = m.new_cache(3, 4)
    for t in range(4):
        out = m(x[:, t], cache=state)  # (B, D) one step; the cache holds 0..t, no mask needed
        state = out.state
        torch.testing.assert_close(out.context, full[:, t])


def test_static_cross_attention_cache_reuses_memory():
    m = MultiHeadAttention(8, num_heads=2, key_dim=6, dtype=D64)
    q, mem = torch.randn(2, 3, 8, dtype=D64), torch.randn(2, 5, 6, dtype=D64)
    full = m(q, mem).context
    cache = m.new_cache(2, 5, static=True)
    first = m(q[:, :1], mem, cache=cache).context
    rest = m(q[:, 1:], cache=cache).context  # key=None: reuse the stored projections
    torch.testing.assert_close(torch.cat([first, rest], 1), full)


def test_cache_past_capacity_raises():
    m = MultiHeadAttention(8, num_heads=2)
    cache = m.new_cache(1, 3)
    m(torch.randn(1, 2, 8), cache=cache)
    with pytest.raises(ValueError, match="capacity"):
        m(torch.randn(1, 2, 8), cache=cache)


def test_gqa_with_all_heads_equals_plain_mha():
    torch.manual_seed(1)
    plain = MultiHeadAttention(16, num_heads=4, dtype=D64)
    gqa = MultiHeadAttention(16, num_heads=4, num_kv_heads=4, dtype=D64)
    gqa.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 16, dtype=D64)
    a, b = plain(x, need_weights=True), gqa(x, need_weights=True)
    torch.testing.assert_close(a.context, b.context)
    torch.testing.assert_close(a.weights, b.weights)


def test_gqa_equals_mha_with_key_value_heads_repeated():
    H, Hk, Dh = 4, 2, 3
    gqa = MultiHeadAttention(12, num_heads=H, num_kv_heads=Hk, dtype=D64)
    mha = MultiHeadAttention(12, num_heads=H, dtype=D64)
    # the fused in-projection's rows q | k | v, with k and v repeated for the H/Hk query heads of each kv head
    sd = {k: v for k, v in gqa.state_dict().items() if not k.startswith("in_proj_")}
    ws, bs = [gqa.q_proj.weight.detach()], [gqa.q_proj.bias.detach()]
    for n in ("k_proj", "v_proj"):  # (Hk*Dh, D) -> (H*Dh, D)
        lin = getattr(gqa, n)
        ws.append(lin.weight.detach().view(Hk, Dh, 12).repeat_interleave(H // Hk, 0).reshape(H * Dh, 12))
        bs.append(lin.bias.detach().view(Hk, Dh).repeat_interleave(H // Hk, 0).reshape(H * Dh))
    sd["in_proj_weight"], sd["in_proj_bias"] = torch.cat(ws), torch.cat(bs)  # (3 H Dh, 12), (3 H Dh,)
    mha.load_state_dict(sd)
    assert gqa.in_proj_weight.shape == (H * Dh + 2 * Hk * Dh, 12) and mha.in_proj_weight.shape == (3 * H * Dh, 12)
    x = torch.randn(2, 5, 12, dtype=D64)
    torch.testing.assert_close(gqa(x, causal=True).context, mha(x, causal=True).context)


def test_rope_scores_depend_only_on_relative_position():
    rope = RotaryEmbedding(8)
    q, k = torch.randn(1, 1, 1, 8, dtype=D64), torch.randn(1, 1, 1, 8, dtype=D64)

    def score(i: int, j: int) -> torch.Tensor:
        return (rope(q, offset=i) * rope(k, offset=j)).sum()

    for i, j in [(0, 0), (3, 1), (1, 3), (7, 2)]:
        for t in (1, 5, 100):
            torch.testing.assert_close(score(i + t, j + t), score(i, j))
    assert not torch.allclose(score(3, 1), score(1, 3))
    # a rotation keeps the norm
    torch.testing.assert_close(rope(q, offset=9).norm(), q.norm())


def test_rope_hand_computed_rotation():
    # D = 2: one pair rotated by angle p (theta_0 = 1): (1, 0) -> (cos p, sin p)
    rope = RotaryEmbedding(2)
    x = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]], dtype=D64)  # (1, 1, 2, 2) at positions 0, 1
    y = rope(x)
    torch.testing.assert_close(y[0, 0, 0], torch.tensor([1.0, 0.0], dtype=D64))
    one = torch.tensor(1.0, dtype=D64)
    torch.testing.assert_close(y[0, 0, 1], torch.stack([torch.cos(one), torch.sin(one)]))


def test_per_head_weights_and_masks():
    m = MultiHeadAttention(8, num_heads=2, dtype=D64)
    x = torch.randn(2, 4, 8, dtype=D64)
    am = torch.ones(4, 4, dtype=torch.bool).tril()
    km = torch.tensor([[True, True, True, False], [True, True, True, True]])
    o = m(x, attn_mask=am, key_allowed=km, need_weights=True)
    assert o.weights.shape == (2, 2, 4, 4)
    assert torch.all(o.weights[0, :, :, 3] == 0)
    assert torch.all(o.weights.triu(1) == 0)
    torch.testing.assert_close(o.weights.sum(-1), torch.ones(2, 2, 4, dtype=D64))
    # float mask of -inf equals the bool mask; a 3-D (B, L, S) mask works too
    f = torch.zeros(4, 4, dtype=D64).masked_fill(~am, float("-inf"))
    torch.testing.assert_close(m(x, attn_mask=f).context, m(x, attn_mask=am).context)
    torch.testing.assert_close(m(x, attn_mask=am.expand(2, 4, 4)).context, m(x, causal=True).context)


def test_fully_masked_row_gives_zeros_not_nan():
    m = MultiHeadAttention(8, num_heads=2, bias=False)
    x = torch.randn(1, 3, 8, requires_grad=True)
    o = m(x, key_allowed=torch.zeros(1, 3, dtype=torch.bool), need_weights=True)
    assert torch.all(o.context == 0) and torch.all(o.weights == 0)
    o.context.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_alibi_matches_explicit_bias():
    m = MultiHeadAttention(8, num_heads=2, positional=ALiBi(2), dtype=D64)
    x = torch.randn(2, 5, 8, dtype=D64)
    o = m(x, causal=True, need_weights=True)
    q = m.q_proj(x).view(2, 5, 2, 4).transpose(1, 2)  # (B, H, L, Dh)
    k = m.k_proj(x).view(2, 5, 2, 4).transpose(1, 2)
    s = q @ k.transpose(-1, -2) / 2.0 + m.positional.bias(5, dtype=D64)  # (B, H, L, S)
    s = s.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(o.weights, s.softmax(-1))


@pytest.mark.parametrize("score", ["dot", "cosine", "general", "additive"])
def test_other_scores_match_functional_reference(score):
    m = MultiHeadAttention(8, num_heads=2, score=score, dtype=D64)
    x = torch.randn(2, 3, 8, dtype=D64)
    o = m(x, need_weights=True)
    q = m.q_proj(x).view(2, 3, 2, 4).transpose(1, 2)  # (B, H, L, Dh)
    k = m.k_proj(x).view(2, 3, 2, 4).transpose(1, 2)
    v = m.v_proj(x).view(2, 3, 2, 4).transpose(1, 2)
    ref, w = attention(q, k, v, score=m.score(), return_weights=True, backend="reference")
    torch.testing.assert_close(o.weights, w)
    torch.testing.assert_close(o.context, m.out_proj(ref.transpose(1, 2).reshape(2, 3, 8)))


def test_construction_errors():
    with pytest.raises(ValueError, match="num_heads=3 does not divide embed_dim=8"):
        MultiHeadAttention(8, num_heads=3)
    with pytest.raises(ValueError, match="num_kv_heads=3 does not divide num_heads=4"):
        MultiHeadAttention(8, num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="unknown score"):
        MultiHeadAttention(8, num_heads=2, score="dott")
    with pytest.raises(ValueError, match=r"pass RotaryEmbedding\(4\)"):
        MultiHeadAttention(8, num_heads=2, positional=RotaryEmbedding(8))
    with pytest.raises(ValueError, match=r"pass ALiBi\(2\)"):
        MultiHeadAttention(8, num_heads=2, positional=ALiBi(4))
    with pytest.raises(TypeError, match="positional must be a RotaryEmbedding"):
        MultiHeadAttention(8, num_heads=2, positional=True)
    with pytest.raises(ValueError, match="score_hidden_dim"):
        MultiHeadAttention(8, num_heads=2, score="general", score_hidden_dim=3)
    assert MultiHeadAttention(8, num_heads=2, score="additive", score_hidden_dim=3).score_v.shape == (2, 3)
    assert MultiHeadAttention(8, num_heads=3, head_dim=4).q_proj.out_features == 12


def test_forward_errors():
    m = MultiHeadAttention(8, num_heads=2)
    x = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match="attn_mask has shape"):
        m(x, attn_mask=torch.ones(3, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="key_allowed must be a bool tensor"):
        m(x, key_allowed=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="embed_dim=8"):
        m(torch.randn(2, 4, 6))
    with pytest.raises(TypeError, match="KVCache"):
        m(x, cache="nope")
    assert isinstance(m.new_cache(2, 4), KVCache)


def test_other_normalizers():
    m = MultiHeadAttention(8, num_heads=2, normalizer="sparsemax", dtype=D64)
    o = m(torch.randn(2, 5, 8, dtype=D64) * 4, need_weights=True)
    torch.testing.assert_close(o.weights.sum(-1), torch.ones(2, 2, 5, dtype=D64))
    assert (o.weights == 0).any()  # sparse
    s = MultiHeadAttention(8, num_heads=2, normalizer="sample", dtype=D64)
    o = s(torch.randn(2, 5, 8, dtype=D64), need_weights=True)
    assert o.log_prob.shape == (2, 2, 5) and torch.all(o.log_prob <= 0)
    assert torch.all(o.weights.sum(-1) == 1) and torch.all((o.weights == 0) | (o.weights == 1))
    with pytest.raises(ValueError, match="unknown normalizer"):
        MultiHeadAttention(8, num_heads=2, normalizer="softmaxx")


def test_cross_attention_sizes_and_out_dim():
    m = MultiHeadAttention(8, num_heads=2, key_dim=5, value_dim=3, out_dim=6, head_dim=3)
    o = m(torch.randn(2, 4, 8), torch.randn(2, 7, 5), torch.randn(2, 7, 3), need_weights=True)
    assert o.context.shape == (2, 4, 6) and o.weights.shape == (2, 2, 4, 7)
    with pytest.raises(ValueError, match="key_dim=5"):
        m(torch.randn(2, 4, 8), torch.randn(2, 7, 4), torch.randn(2, 7, 3))


def test_cross_attention_state_reuses_projected_memory():
    m = MultiHeadAttention(8, num_heads=2, key_dim=6, dtype=D64)
    q = torch.randn(2, 4, 8, dtype=D64)
    mem = torch.randn(2, 5, 6, dtype=D64, requires_grad=True)
    full = m(q, mem)
    state, outs = None, []
    for t in range(4):  # decoder-style: query (B, D), the same memory every step
        out = m(q[:, t], mem, cache=state)
        if state is not None:
            assert out.state is state
        state = out.state
        outs.append(out.context)
    torch.testing.assert_close(torch.stack(outs, 1), full.context)
    ga = torch.autograd.grad(torch.stack(outs, 1).sum(), [mem, m.k_proj.weight])
    gb = torch.autograd.grad(full.context.sum(), [mem, m.k_proj.weight])
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b)
    assert isinstance(state, KVCache) and state.static
    assert m(q[:, 0], mem.detach().clone(), cache=state).state is not state  # other memory: projected anew
    with torch.no_grad():
        m.k_proj.weight.mul_(2.0)
    assert m(q[:, 0], mem, cache=state).state is not state  # W_k changed in place: projected anew
    assert MultiHeadAttention(8, num_heads=2, dtype=D64)(q).state is None  # self-attention, no cache: no state


@pytest.mark.parametrize("causal", [False, True])
def test_plain_self_attention_matches_the_math_backend_and_the_reference(causal):
    """The commonest call (a Transformer layer's self-attention) through attention()'s plain
    call, on the math backend, and by hand from the float64 reference."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, num_heads=4)
    x = torch.randn(3, 5, 16, requires_grad=True)
    fast = mha(x, causal=causal).context
    with restrict_backends("math"):  # the same module through dispatch on the math backend
        slow = mha(x, causal=causal).context
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    g_fast = torch.autograd.grad(fast.square().sum(), (x, mha.in_proj_weight))
    g_slow = torch.autograd.grad(slow.square().sum(), (x, mha.in_proj_weight))
    for a, b in zip(g_fast, g_slow):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # by hand: project, split heads, attend (float64 reference), merge, project out
    with torch.no_grad():
        xd = x.double()
        q, k, v = torch.nn.functional.linear(xd, mha.in_proj_weight.double(), mha.in_proj_bias.double()).split(16, -1)
        heads = [t.reshape(3, 5, 4, 4).transpose(1, 2) for t in (q, k, v)]  # (B, H, L, Dh)
        ctx = reference.run(build_spec(*heads, causal=causal)).output  # (B, H, L, Dh)
        want = mha.out_proj.double()(ctx.transpose(1, 2).reshape(3, 5, 16))
    torch.testing.assert_close(fast.double(), want, rtol=1e-5, atol=1e-6)


def test_plain_call_is_attentions_plainest_call(monkeypatch):
    """Scaled dot, softmax, no mask, no dropout, no weights: MultiHeadAttention passes nothing
    but ``causal``, so attention() can take its shortcut for the plainest call."""
    calls = []

    def spy(q, k, v, **kwargs):
        calls.append(kwargs)
        return attention(q, k, v, **kwargs)

    monkeypatch.setattr(multihead, "attend", spy)
    mha = MultiHeadAttention(8, num_heads=2, dropout=0.1).eval()
    x = torch.randn(1, 3, 8)
    for causal in (False, True):
        mha(x, causal=causal)
    assert calls == [{"causal": False}, {"causal": True}]
    mha.train()
    mha(x, causal=True)  # dropout only in training
    assert calls[-1] == {"causal": True, "dropout_p": 0.1}


def test_recording_specs_sees_the_plain_call():
    mha = MultiHeadAttention(8, num_heads=2)
    with torch.no_grad(), record_specs() as specs:
        mha(torch.randn(1, 3, 8), causal=True)
    assert len(specs) == 1 and specs[0].causal
