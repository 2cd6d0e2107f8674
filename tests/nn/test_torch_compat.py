"""attnkit.nn.MultiheadAttention against torch.nn.MultiheadAttention on random configurations."""

from __future__ import annotations

import random

import pytest
import torch

from attnkit.nn import MultiheadAttention

MASK_KINDS = ("none", "kpm_bool", "kpm_float", "attn_bool2", "attn_float2", "attn_bool3", "attn_float3",
              "causal", "kpm_and_attn", "kpm_and_causal")


def _masks(kind: str, rng: random.Random, N: int, H: int, L: int, S: int):
    g = torch.Generator().manual_seed(rng.randrange(1 << 30))
    kpm = am = None
    causal = False

    def pad_bool():
        lens = [rng.randint(1, S) for _ in range(N)]
        return torch.arange(S)[None, :] >= torch.tensor(lens)[:, None]  # True = ignore; >= 1 real key per row

    def attn_bool(shape):
        m = torch.rand(shape, generator=g) < 0.3
        m[..., 0] = False  # keep one key per row so torch gives no NaN
        return m

    if kind in ("kpm_bool", "kpm_and_attn", "kpm_and_causal"):
        kpm = pad_bool()
    if kind == "kpm_float":
        kpm = torch.randn(N, S, generator=g)
    if kind in ("attn_bool2", "kpm_and_attn"):
        am = attn_bool((L, S))
    if kind == "attn_float2":
        am = torch.randn(L, S, generator=g)
    if kind == "attn_bool3":
        am = attn_bool((N * H, L, S))
    if kind == "attn_float3":
        am = torch.randn(N * H, L, S, generator=g)
    if kind in ("causal", "kpm_and_causal"):
        am = torch.ones(L, S, dtype=torch.bool).triu(1)  # torch: True = not allowed
        causal = True
    return kpm, am, causal


def _config(seed: int):
    rng = random.Random(seed)
    H = rng.choice([1, 2, 4])
    E = H * rng.choice([2, 3, 4])
    cfg = dict(
        embed_dim=E,
        num_heads=H,
        bias=rng.random() < 0.8,
        add_bias_kv=rng.random() < 0.3,
        add_zero_attn=rng.random() < 0.3,
        kdim=rng.choice([None, None, 5]),
        vdim=rng.choice([None, None, 7]),
        batch_first=rng.random() < 0.5,
        dropout=rng.choice([0.0, 0.1]),  # compared in eval mode, where dropout is off
    )
    N, L = rng.randint(1, 3), rng.randint(1, 5)
    S = L if rng.random() < 0.5 else rng.randint(1, 6)
    kind = MASK_KINDS[seed % len(MASK_KINDS)]
    if kind in ("causal", "kpm_and_causal"):
        S = L
    return rng, cfg, N, L, S, kind


@pytest.mark.parametrize("seed", range(60))
def test_random_configuration_matches_torch(seed):
    _check_against_torch(seed)


@pytest.mark.parametrize("seed", range(len(MASK_KINDS)))
def test_head_averaged_weights_by_row_blocks_match_torch(seed, monkeypatch):
    """need_weights with average_attn_weights forms the weights row block by row block;
    with a 1-byte budget every block is one query row, and every mask kind must still match."""
    from attnkit.nn import torch_compat

    monkeypatch.setattr(torch_compat, "MEAN_WEIGHTS_BLOCK_BYTES", 1)
    _check_against_torch(seed + 1000)


def _check_against_torch(seed: int) -> None:
    rng, cfg, N, L, S, kind = _config(seed)
    ref = torch.nn.MultiheadAttention(**cfg).eval()
    ours = MultiheadAttention(**cfg).eval()
    assert ours.load_state_dict(ref.state_dict()) is not None
    assert set(ours.state_dict()) == set(ref.state_dict())
    kd, vd = cfg["kdim"] or cfg["embed_dim"], cfg["vdim"] or cfg["embed_dim"]
    g = torch.Generator().manual_seed(seed)

    def inp(n, d):
        return torch.randn(N, n, d, generator=g) if cfg["batch_first"] else torch.randn(n, N, d, generator=g)

    self_attn = kd == vd == cfg["embed_dim"] and rng.random() < 0.4
    q = inp(L, cfg["embed_dim"])
    k, v = (q, q) if self_attn else (inp(S, kd), inp(S, vd))
    if self_attn:
        S = L
    kpm, am, causal = _masks(kind, rng, N, cfg["num_heads"], L, S)
    for need_weights in (True, False):
        for avg in (True, False):
            # torch quirk: is_causal with no key_padding_mask and need_weights=False drops attn_mask and runs
            # SDPA's is_causal over the keys *including* bias_k / the zero key, which the padded mask allows
            # (torch disagrees with itself between need_weights on and off). We follow the mask; compare with
            # torch's mask-only path there.
            quirk = causal and kpm is None and not need_weights and (cfg["add_bias_kv"] or cfg["add_zero_attn"])
            r_out, r_w = ref(q, k, v, key_padding_mask=kpm, need_weights=need_weights, attn_mask=am,
                             average_attn_weights=avg, is_causal=causal and not quirk)
            o_out, o_w = ours(q, k, v, key_padding_mask=kpm, need_weights=need_weights, attn_mask=am,
                              average_attn_weights=avg, is_causal=causal)
            torch.testing.assert_close(o_out, r_out, rtol=1e-5, atol=1e-5)
            if need_weights:
                torch.testing.assert_close(o_w, r_w, rtol=1e-5, atol=1e-5)
            else:
                assert o_w is None and r_w is None
            if not need_weights:
                break
    with torch.no_grad():  # inference mode: torch may take its fused fast path here
        r_out, _ = ref(q, k, v, key_padding_mask=kpm, need_weights=False, attn_mask=am)
        o_out, _ = ours(q, k, v, key_padding_mask=kpm, need_weights=False, attn_mask=am)
        torch.testing.assert_close(o_out, r_out, rtol=1e-5, atol=1e-5)


def test_dropout_in_training_only():
    m = MultiheadAttention(8, 2, dropout=0.5, batch_first=True)
    x = torch.randn(2, 6, 8)
    a, b = m(x, x, x)[0], m(x, x, x)[0]
    assert not torch.allclose(a, b)  # training: weights dropped at random
    m.eval()
    torch.testing.assert_close(m(x, x, x)[0], m(x, x, x)[0])


def test_unbatched_inputs_match_torch():
    ref = torch.nn.MultiheadAttention(8, 2, kdim=3, vdim=5)
    ours = MultiheadAttention(8, 2, kdim=3, vdim=5)
    ours.load_state_dict(ref.state_dict())
    q, k, v = torch.randn(4, 8), torch.randn(6, 3), torch.randn(6, 5)
    am = torch.rand(2, 4, 6) < 0.3
    am[..., 0] = False
    for avg in (True, False):
        r = ref(q, k, v, attn_mask=am, average_attn_weights=avg)
        o = ours(q, k, v, attn_mask=am, average_attn_weights=avg)
        torch.testing.assert_close(o[0], r[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(o[1], r[1], rtol=1e-5, atol=1e-5)


def test_gradients_match_torch():
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True, add_bias_kv=True, dtype=torch.float64)
    ours = MultiheadAttention(8, 2, batch_first=True, add_bias_kv=True, dtype=torch.float64)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    ref(x, x, x)[0].square().sum().backward()
    ours(x, x, x)[0].square().sum().backward()
    for (n, p), (_, r) in zip(ours.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, r.grad, msg=n)


def test_fully_masked_rows_give_the_output_bias():
    """attnkit's rule: a query with no allowed key gets the attention context 0, so the layer's output is
    out_proj(0) = out_proj.bias, weights 0, finite gradients. torch 2.13 gives the same output where it runs
    SDPA (need_weights=False) and NaN output and weights with need_weights=True."""
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    torch.nn.init.normal_(ref.out_proj.bias)  # torch starts it at 0, which would hide the difference
    torch.nn.init.normal_(ref.in_proj_bias)
    ours = MultiheadAttention(8, 2, batch_first=True)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 8, requires_grad=True)
    kpm = torch.tensor([[True, True, True], [False, True, False]])  # batch 0: every key ignored
    bias = ref.out_proj.bias.detach().expand(3, 8)
    r_out, r_w = ref(x, x, x, key_padding_mask=kpm)
    assert torch.isnan(r_out[0]).all() and torch.isnan(r_w[0]).all()
    r_sdpa, _ = ref(x, x, x, key_padding_mask=kpm, need_weights=False)
    torch.testing.assert_close(r_sdpa[0], bias)
    for need_weights in (True, False):
        o_out, o_w = ours(x, x, x, key_padding_mask=kpm, need_weights=need_weights)
        torch.testing.assert_close(o_out[0], bias)
        torch.testing.assert_close(o_out[1], r_sdpa[1])
        if need_weights:
            assert torch.all(o_w[0] == 0)
            torch.testing.assert_close(o_w[1], r_w[1])
    o_out.sum().backward()
    assert torch.isfinite(x.grad).all()
    ours.eval()
    with torch.no_grad():  # inference: the same rule (torch's fused kernel here: see the module docstring)
        torch.testing.assert_close(ours(x, x, x, key_padding_mask=kpm, need_weights=False)[0][0], bias)


def test_is_causal_alone_applies_the_causal_mask():
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    ours = MultiheadAttention(8, 2, batch_first=True)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 8)
    cm = torch.ones(4, 4, dtype=torch.bool).triu(1)
    torch.testing.assert_close(ours(x, x, x, is_causal=True)[0], ref(x, x, x, attn_mask=cm, is_causal=True)[0])


def test_bad_masks_and_sizes_raise():
    m = MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(3, 4, 8)
    with pytest.raises(ValueError, match=r"\(N \* num_heads, L, S\) = \(6, 4, 4\)"):
        m(x, x, x, attn_mask=torch.zeros(3, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="key_padding_mask has shape"):
        m(x, x, x, key_padding_mask=torch.zeros(3, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="attn_mask must be a bool"):
        m(x, x, x, attn_mask=torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="num_heads=3 does not divide embed_dim=8"):
        MultiheadAttention(8, 3)


def test_torch_loads_our_state_dict_too():
    for kw in ({}, {"kdim": 3, "vdim": 5, "add_bias_kv": True}, {"bias": False}):
        ours = MultiheadAttention(8, 2, **kw)
        ref = torch.nn.MultiheadAttention(8, 2, **kw)
        ref.load_state_dict(ours.state_dict())  # strict: the same names and shapes both ways


def test_swaps_into_torch_transformer_encoder_layer():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    x = torch.randn(2, 5, 8)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    want = layer(x, src_key_padding_mask=pad)
    ours = MultiheadAttention(8, 2, batch_first=True)
    ours.load_state_dict(layer.self_attn.state_dict())
    layer.self_attn = ours
    torch.testing.assert_close(layer(x, src_key_padding_mask=pad), want, rtol=1e-5, atol=1e-5)
