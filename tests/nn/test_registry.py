"""The mechanism registry, and the contract every registered mechanism keeps:
forward, backward, state_dict round trip, float64 gradcheck on a tiny size."""

from __future__ import annotations

import pytest
import torch

import attnkit
import attnkit.core.scores
from attnkit.nn import AttentionOutput
from attnkit.nn.registry import MECHANISMS, mechanism_info, register_mechanism

D64 = torch.float64
Dq, Dk, B, L, S = 4, 6, 2, 3, 5

#: extra constructor options a mechanism needs at this tiny size
_OPTIONS = {
    "luong-dot": {"key_dim": Dq},
    "luong-location": {"max_source_len": 8},
}


def _build(name: str, dtype=D64):
    info = mechanism_info(name)
    if info.kind == "vision":
        return info.build(4, dtype=dtype)
    if info.kind == "unit":
        return info.build(3, dtype=dtype)
    kw = {"key_dim": Dk, **_OPTIONS.get(name, {})}
    if info.cls is attnkit.nn.MultiHeadAttention or issubclass(info.cls, attnkit.nn.MultiHeadAttention):
        kw["num_heads"] = 2
    return info.build(Dq, dtype=dtype, **kw)


def _inputs(name: str, dtype=D64):
    info = mechanism_info(name)
    g = torch.Generator().manual_seed(0)
    if info.kind == "vision":
        return (torch.randn(B, 4, 3, 3, dtype=dtype, generator=g),), {}
    if info.kind == "unit":
        return (torch.randn(B, 3, dtype=dtype, generator=g),), {}
    dk = _OPTIONS.get(name, {}).get("key_dim", Dk)
    q = torch.randn(B, L, Dq, dtype=dtype, generator=g)
    k = torch.randn(B, S, dk, dtype=dtype, generator=g)
    km = torch.ones(B, S, dtype=torch.bool)
    km[1, -2:] = False
    return (q, k), {"key_allowed": km}


def _context(out):
    return out.context if isinstance(out, AttentionOutput) else out


NAMES = attnkit.list_mechanisms()


def test_names_aliases_and_close_matches():
    assert {"bahdanau", "luong-dot", "luong-general", "luong-concat", "luong-location", "multi-head"} <= set(NAMES)
    assert mechanism_info("bahdanau-attention").name == "bahdanau"
    assert mechanism_info("multiplicative").name == "luong-general"
    assert mechanism_info("Luong_General").name == "luong-general"
    assert "bahdanau-attention" in attnkit.list_mechanisms(aliases=True)
    with pytest.raises(ValueError, match="did you mean 'bahdanau'"):
        attnkit.create("bahdanu", 4)
    with pytest.raises(ValueError, match="unknown attention mechanism 'zzz'"):
        attnkit.create("zzz", 4)


@pytest.mark.parametrize("score", sorted(attnkit.core.scores.SCORES))
def test_no_mechanism_is_named_after_a_score(score):
    """A name means one thing: scores of attnkit.core.scores are not mechanism names
    (attnkit.presets.resolve_attention maps --attention per model kind), except where the
    mechanism is the paper's own name (bahdanau, content)."""
    names = set(attnkit.list_mechanisms(aliases=True))
    assert score.replace("_", "-") not in names or score in ("bahdanau", "content")


def test_a_score_name_says_which_mechanism_it_used_to_name():
    with pytest.raises(ValueError, match="unknown attention mechanism 'general'.*used to name is 'luong-general'"):
        attnkit.create("general", 4)


def test_create_applies_defaults_and_overrides():
    m = attnkit.create("luong-general", 4, key_dim=6)
    assert isinstance(m, attnkit.nn.LuongAttention) and m.mode == "general"
    assert attnkit.create("luong-general", 4, mode="dot").mode == "dot"


def test_duplicate_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):

        @register_mechanism("bahdanau", paper="x", formula="y")
        class Other(torch.nn.Module):
            pass


@pytest.mark.parametrize("name", NAMES)
def test_every_mechanism_has_paper_and_formula(name):
    info = MECHANISMS[name]
    assert "20" in info.paper or "19" in info.paper
    assert len(info.formula) > 5
    assert info.cls.__doc__ and info.cls.__module__.startswith("attnkit.nn")


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_state_dict(name):
    m = _build(name, torch.float32)
    args, kw = _inputs(name, torch.float32)
    args = tuple(a.float().requires_grad_(True) for a in args)
    out = m(*args, **kw)
    ctx = _context(out)
    assert torch.isfinite(ctx).all()
    loss = ctx.square().sum()
    if isinstance(out, AttentionOutput) and out.log_prob is not None:
        loss = loss + out.log_prob.sum()  # REINFORCE: the scores learn through log p
    loss.backward()
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in args)
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert grads or name == "luong-dot"  # only the dot score has no parameters
    m2 = _build(name, torch.float32)
    m2.load_state_dict(m.state_dict())
    m.eval(), m2.eval()
    torch.testing.assert_close(_context(m2(*args, **kw)), _context(m(*args, **kw)))


@pytest.mark.parametrize("name", [n for n in NAMES if MECHANISMS[n].kind == "sequence"])
def test_decoder_style_call(name):
    """query (B, Dq) one step and (B, L, Dq), keys (B, S, Dk), key_allowed, need_weights."""
    m = _build(name)
    (q, k), kw = _inputs(name)
    out = m(q[:, 0], k, None, key_allowed=kw["key_allowed"], step=0, state=None, need_weights=True)
    assert isinstance(out, AttentionOutput)
    assert out.context.shape == (B, m.output_dim)
    w = out.weights
    assert w.shape[0] == B and w.shape[-1] == S
    assert torch.all(w[1, ..., -2:] == 0)
    full = m(q, k, key_allowed=kw["key_allowed"], step=0, state=out.state if name != "multi-head" else None)
    assert full.context.shape == (B, L, m.output_dim)


HARD = ("hard", "hard-argmax", "gumbel")


@pytest.mark.parametrize("name", [n for n in NAMES if n not in HARD])
def test_float64_gradcheck(name):
    m = _build(name)
    m.eval()
    args, kw = _inputs(name)
    args = tuple(a.clone().requires_grad_(True) for a in args)

    def f(*xs):
        return _context(m(*xs, **kw))

    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", HARD)
def test_float64_gradcheck_hard(name):
    """A hard choice is piecewise constant in the scores, so finite differences see 0 where
    straight-through / REINFORCE estimators are not: check what is smooth. The context is
    linear in the values; log p of a fixed draw (same generator seed) is smooth in q and k."""
    m = _build(name)
    (q, k), kw = _inputs(name)
    v = torch.randn(B, S, k.shape[-1], dtype=D64).requires_grad_(True)

    def ctx(values):
        return m(q, k, values, generator=torch.Generator().manual_seed(3), **kw).context

    assert torch.autograd.gradcheck(ctx, (v,), eps=1e-6, atol=1e-5)
    if m(q, k, **kw).log_prob is not None:

        def log_p(qq, kk):
            return m(qq, kk, generator=torch.Generator().manual_seed(3), **kw).log_prob

        assert torch.autograd.gradcheck(log_p, (q.requires_grad_(True), k.requires_grad_(True)), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in NAMES if MECHANISMS[n].kind == "sequence"])
def test_a_query_with_no_allowed_key_gets_context_zero(name):
    """One rule for every module (attnkit.nn.base): the attention context of a query with no allowed
    key is 0, and the module's output is what its own layers make of 0 (never NaN): the same output
    as attending over all-zero values; multi-head layers project values first, so there it is
    out_proj(0), the output bias."""
    m = _build(name)
    m.eval()
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("bias"):
                p.normal_()  # biases start at 0 in some layers, which would hide what they make of 0
    (q, k), _ = _inputs(name)
    allowed = torch.ones(B, S, dtype=torch.bool)
    allowed[1] = False  # batch row 1: no key may be attended
    q, k = q.clone().requires_grad_(True), k.clone().requires_grad_(True)
    out = m(q, k, key_allowed=allowed, need_weights=True)
    if isinstance(m, attnkit.nn.MultiHeadAttention):
        bias = m.out_proj.bias
        want = torch.zeros(L, m.output_dim, dtype=D64) if bias is None else bias.detach().expand(L, -1)
    else:
        want = m(q, k, torch.zeros_like(k), key_allowed=torch.ones_like(allowed)).context[1]
    torch.testing.assert_close(out.context[1], want)
    assert torch.all(out.weights[1] == 0)
    out.context.square().sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
