"""sdpa and chunked backends: hand-worked numbers, dispatch, refusals, memory, dropout, weights helpers."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.backends import (
    auto_declines,
    chunked_attention,
    get_backend,
    restrict_backends,
    select_backend,
)
from attnkit.backends.additive_tiles import COMPILED, additive_pair, additive_pair_grads
from attnkit.backends.sdpa import SDPABackend
from attnkit.core import reference
from attnkit.functional import attention, attention_weights, build_spec, column_sums
from tests.tolerances import assert_close

RUNNABLE = ["sdpa", "chunked", "math"]


@pytest.mark.parametrize("backend", RUNNABLE)
def test_dot_by_hand(backend):
    # q = [1, 1]; keys [0, 1], [1, 1] -> scores [1, 2] -> weights softmax = [1, e] / (1 + e)
    q = torch.tensor([[[1.0, 1.0]]])
    k = v = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    out, w = attention(q, k, v, score="dot", return_weights=True, backend=backend)
    w1 = math.e / (1 + math.e)  # 0.7311
    assert_close(w, torch.tensor([[[1 - w1, w1]]]))
    assert_close(out, torch.tensor([[[w1, 1.0]]]))  # (1-w1)·[0,1] + w1·[1,1]


@pytest.mark.parametrize("backend", ["chunked", "math"])
def test_additive_by_hand(backend):
    # W_q = W_k = I, v = [1, 1], q = 0: score_j = tanh(k_j1) + tanh(k_j2)
    # k_1 = [0, 0] -> 0;  k_2 = [atanh 0.5, atanh 0.5] -> 1;  weights = softmax([0, 1])
    a = math.atanh(0.5)
    q = torch.zeros(1, 1, 2)
    k = torch.tensor([[[0.0, 0.0], [a, a]]])
    v = torch.tensor([[[2.0], [4.0]]])
    p = {"w_q": torch.eye(2), "w_k": torch.eye(2), "v": torch.ones(2)}
    out, w = attention(q, k, v, score="additive", score_params=p, return_weights=True, backend=backend)
    w1 = math.e / (1 + math.e)
    assert_close(w, torch.tensor([[[1 - w1, w1]]]))
    assert_close(out, torch.tensor([[[2 * (1 - w1) + 4 * w1]]]))  # 3.4621


def _spec(**kw):
    q, k, v = torch.randn(1, 2, 4, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    return build_spec(q, k, v, **kw)


def _additive(E=8, Dh=5):
    return {"w_q": torch.randn(Dh, E), "w_k": torch.randn(Dh, E), "v": torch.randn(Dh)}


def test_auto_dispatch_order():
    assert select_backend(_spec()).name == "sdpa"
    assert select_backend(_spec(score="general", score_params={"weight": torch.randn(8, 8)})).name == "sdpa"
    assert select_backend(_spec(return_weights=True)).name == "sdpa"  # weights recomputed, not math
    # small calls: math's one materialised pass beats the tile loop (chunked declines, with its reason)
    assert select_backend(_spec(score="additive", score_params=_additive())).name == "math"
    assert select_backend(_spec(score_mod=lambda s, b, h, i, j: s - (i - j).abs())).name == "math"
    additive_spec = _spec(score="additive", score_params=_additive())
    assert "small call" in auto_declines(get_backend("chunked"), additive_spec, None)
    # large ones: math would materialise 4096 x 4096 x (3 + 2 x 5) floats = 832 MiB > 256 MiB
    q = torch.randn(1, 4096, 8)
    assert select_backend(build_spec(q, q, q, score="additive", score_params=_additive(8))).name == "chunked"
    q = torch.randn(1, 8192, 8)  # a score_mod on dot scores: 8192² x 3 floats = 768 MiB
    assert select_backend(build_spec(q, q, q, score_mod=lambda s, b, h, i, j: s - (i - j).abs())).name == "chunked"
    with restrict_backends("chunked", "sdpa"):  # math not allowed: chunked takes small calls too
        assert select_backend(_spec(score="additive", score_params=_additive())).name == "chunked"
    assert select_backend(_spec(normalizer="sparsemax")).name == "math"


def test_forced_backend_lists_reasons():
    q = k = v = torch.randn(1, 3, 4)
    with pytest.raises(ValueError, match="score 'additive' is not a dot product"):
        attention(q, k, v, score="additive", score_params=_additive(4), backend="sdpa")
    with pytest.raises(ValueError, match="normalizer 'sparsemax' is not softmax"):
        attention(q, k, v, normalizer="sparsemax", backend="chunked")


def test_restrict_backends():
    spec = _spec()
    with restrict_backends("chunked"):
        assert select_backend(spec).name == "chunked"
        with restrict_backends("math"):
            assert select_backend(spec).name == "math"
        assert select_backend(spec).name == "chunked"
    with restrict_backends("chunked", "math"):  # a small call: chunked passes it to math
        assert select_backend(spec).name == "math"
    assert select_backend(spec).name == "sdpa"
    with restrict_backends("sdpa"):
        with pytest.raises(ValueError, match="no backend can run this call: sdpa: normalizer"):
            select_backend(_spec(normalizer="entmax15"))
    with pytest.raises(ValueError, match="unknown backend 'flash'"):
        with restrict_backends("flash"):
            pass


def test_too_large_for_every_backend_is_refused_before_allocation(monkeypatch):
    monkeypatch.setenv("ATTNKIT_MEMORY_LIMIT", str(64 * 1024))  # pretend 64 KiB are free
    q = torch.randn(1, 1, 256, 8)
    with pytest.raises(ValueError, match=r"chunked: needs about [\d.]+ (KiB|MiB) but 64\.0 KiB is available"):
        attention(q, q, q, score="additive", score_params=_additive())
    monkeypatch.setenv("ATTNKIT_MEMORY_LIMIT", str(1 << 23))  # 8 MiB: chunked fits, math does not
    q = torch.randn(1, 1, 512, 8)
    spec = build_spec(q, q, q, score="additive", score_params=_additive(), return_weights=False)
    assert any("needs about" in r for r in get_backend("math").not_supported_reasons(spec))
    assert get_backend("chunked").not_supported_reasons(spec) == []


@pytest.mark.parametrize("backend", RUNNABLE)
def test_non_contiguous_inputs(backend):
    base = torch.randn(2, 7, 3, 8, dtype=torch.float64)  # (B, L, H, E) as a projection lays it out
    q = base.transpose(1, 2)  # (B, H, L, E), strided
    k = torch.randn(2, 9, 3, 8, dtype=torch.float64).transpose(1, 2)
    v = torch.randn(2, 9, 3, 16, dtype=torch.float64)[..., ::2].transpose(1, 2)
    assert not q.is_contiguous() and not v.is_contiguous()
    out = attention(q, k, v, causal=True, backend=backend)
    ref = attention(q.contiguous(), k.contiguous(), v.contiguous(), causal=True, backend="reference")
    assert_close(out, ref)


def test_alibi_as_float_mask_and_as_score_mod():
    """ALiBi (Press et al. 2021, arXiv:2108.12409): bias -m_h·(i - j), through sdpa (mask) and chunked (score_mod)."""
    H, L = 4, 6
    slopes = torch.tensor([2.0 ** (-8 * (h + 1) / H) for h in range(H)], dtype=torch.float64)
    i = torch.arange(L)
    bias = -slopes.view(H, 1, 1) * (i[:, None] - i[None, :]).abs()  # (H, L, L)
    q, k, v = (torch.randn(2, H, L, 8, dtype=torch.float64) for _ in range(3))
    ref = attention(q, k, v, mask=bias, causal=True, backend="reference")
    assert_close(attention(q, k, v, mask=bias, causal=True, backend="sdpa"), ref)

    def alibi(s, b, h, qi, ki):
        return s - slopes[h] * (qi - ki).abs()

    assert_close(attention(q, k, v, score_mod=alibi, causal=True, backend="chunked"), ref)


def test_chunked_refuses_score_mod_with_trainable_captures():
    slope = torch.tensor(0.5, requires_grad=True)

    def mod(s, b, h, qi, ki):
        return s - slope * (qi - ki).abs()

    spec = _spec(score_mod=mod)
    reasons = get_backend("chunked").not_supported_reasons(spec)
    assert any("captures tensors that require grad (slope)" in r for r in reasons)
    assert select_backend(spec).name == "math"  # and math gives the slope its gradient


def test_chunked_dropout_is_reproducible_and_its_backward_matches_its_forward():
    q, k, v = (torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    p = {"w_q": torch.randn(3, 4, dtype=torch.float64), "w_k": torch.randn(3, 4, dtype=torch.float64),
         "v": torch.randn(3, dtype=torch.float64, requires_grad=True)}

    def f(q, k, v, va):
        g = torch.Generator().manual_seed(7)
        spec = build_spec(q, k, v, score="additive", score_params={**p, "v": va}, dropout_p=0.3, generator=g)
        return chunked_attention(spec, block_q=2, block_k=2).output

    a, b = f(q, k, v, p["v"]), f(q, k, v, p["v"])
    assert torch.equal(a, b)
    no_drop = chunked_attention(build_spec(q, k, v, score="additive", score_params=p)).output
    assert not torch.allclose(a, no_drop)
    assert torch.autograd.gradcheck(f, (q, k, v, p["v"]), eps=1e-6, atol=1e-6)


def test_sdpa_dropout_follows_the_generator():
    q = k = v = torch.randn(1, 2, 16, 8)
    a = attention(q, k, v, dropout_p=0.5, generator=torch.Generator().manual_seed(3), backend="sdpa")
    b = attention(q, k, v, dropout_p=0.5, generator=torch.Generator().manual_seed(3), backend="sdpa")
    c = attention(q, k, v, dropout_p=0.5, generator=torch.Generator().manual_seed(4), backend="sdpa")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_chunked_gradcheck_additive_masked():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    k = torch.randn(1, 2, 4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    v = torch.randn(1, 2, 4, 2, dtype=torch.float64, generator=g, requires_grad=True)
    wq, wk, va = (torch.randn(*s, dtype=torch.float64, generator=g, requires_grad=True) for s in ((4, 3), (4, 3), (4,)))
    bias = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)

    def f(q, k, v, wq, wk, va, bias):
        spec = build_spec(q, k, v, score="additive", score_params={"w_q": wq, "w_k": wk, "v": va}, mask=bias,
                          causal=True, return_weights=True)
        r = chunked_attention(spec, block_q=2, block_k=3)
        return r.output, r.weights

    assert torch.autograd.gradcheck(f, (q, k, v, wq, wk, va, bias))


def test_attention_weights_rows_heads_and_column_sums():
    H, L, S = 3, 9, 7
    q, k = torch.randn(2, H, L, 4, dtype=torch.float64), torch.randn(2, H, S, 4, dtype=torch.float64)
    p = {"w_q": torch.randn(H, 5, 4, dtype=torch.float64), "w_k": torch.randn(H, 5, 4, dtype=torch.float64),
         "v": torch.randn(H, 5, dtype=torch.float64)}
    mask = torch.rand(2, 1, L, S) > 0.3
    mask[0, 0, 4] = False

    def mod(s, b, h, qi, ki):
        return s + 0.1 * h * (qi - ki)  # depends on the true head number

    kw = dict(score="additive", score_params=p, mask=mask, score_mod=mod)
    spec = build_spec(q, k, k, return_weights=True, **kw)
    with pytest.raises(ValueError, match=r"rows must be \(start, stop\)"):
        attention_weights(q, k, rows=(5, 2), **kw)
    with pytest.raises(ValueError, match="heads must be"):
        attention_weights(q, k, heads=[3], **kw)
    ref_w = reference.run(spec).weights  # (2, H, L, S)
    w = attention_weights(q, k, rows=(2, 6), heads=[2, 0], block_q=2, block_k=3, **kw)
    assert_close(w, ref_w[:, [2, 0], 2:6])
    assert_close(column_sums(q, k, block_q=4, block_k=2, **kw), ref_w.sum(-2))
    assert_close(column_sums(q[:, 0], k[:, 0], mask=mask), reference.run(
        build_spec(q[:, 0], k[:, 0], k[:, 0], mask=mask, return_weights=True)).weights.sum(-2).squeeze(1))


@pytest.mark.slow
def test_chunked_compiled_additive_tiles_match_reference():
    """Slow: torch.compile builds the C++ tile kernels (tens of seconds on 2 cores, once per shape)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, n, 8, generator=g, requires_grad=True) for n in (20, 24, 24))
    p = {"w_q": torch.randn(16, 8, generator=g), "w_k": torch.randn(16, 8, generator=g),
         "v": torch.randn(2, 16, generator=g, requires_grad=True)}
    mask = torch.rand(2, 1, 20, 24, generator=g) > 0.2
    spec = build_spec(q, k, v, score="additive", score_params=p, mask=mask, causal=True, return_weights=True)
    got = chunked_attention(spec, block_q=8, block_k=8, compile=True)
    assert COMPILED.failed is None, COMPILED.failed  # really compiled, not the eager fallback
    ref = reference.run(spec)
    assert_close(got.output, ref.output, torch.float32)
    ga = torch.autograd.grad(got.output.sum(), (q, k, v, p["v"]))
    gb = torch.autograd.grad(ref.output.sum(), (q, k, v, p["v"]))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b.float(), rtol=1e-4, atol=1e-4)


def test_additive_pair_without_tanh_by_hand():
    # tanh(0.5 + 0.25) = tanh(0.75) = 0.635149; v = [2] -> pair 1.270298
    # r = 1 / (e^{1.5} + 1) = 0.182426; dt/dx = 4 r (1 - r) = 1 - tanh² = 0.596586
    qp, kp, v = torch.tensor([[[[0.5]]]]), torch.tensor([[[[0.25]]]]), torch.tensor([2.0])
    for sep in (True, False):
        qf, kf = (torch.exp(2 * qp), torch.exp(2 * kp)) if sep else (qp, kp)
        assert additive_pair(qf, kf, v, sep).item() == pytest.approx(1.270298, abs=1e-6)
        gq, gk, gv = additive_pair_grads(qf, kf, v, torch.tensor([[[[1.0]]]]), sep)
        assert gq.item() == pytest.approx(2 * 0.596586, abs=1e-5)  # dpair · v · (1 - t²)
        assert gk.item() == pytest.approx(2 * 0.596586, abs=1e-5)
        assert gv.item() == pytest.approx(0.635149, abs=1e-6)  # dpair · t


@pytest.mark.parametrize("scale", [0.3, 40.0])
def test_chunked_additive_large_preactivations(scale):
    """|W q| up to ~100 leaves the separable exp form's range (bound 20): the per-pair
    exp form takes over and still matches the float64 oracle (no overflow, no NaN)."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, n, 6, generator=g, requires_grad=True) for n in (9, 11, 11))
    p = {"w_q": scale * torch.randn(7, 6, generator=g), "w_k": scale * torch.randn(7, 6, generator=g),
         "v": torch.randn(7, generator=g, requires_grad=True)}
    kw = dict(score="additive", score_params=p, mask=torch.rand(2, 1, 9, 11, generator=g) > 0.3)
    got = attention(q, k, v, backend="chunked", **kw)
    ref = reference.run(build_spec(*(t.double() for t in (q, k, v)), **{
        **kw, "score_params": {n: t.double() for n, t in p.items()}}))
    assert torch.isfinite(got).all()
    assert_close(got, ref.output.float(), torch.float32)
    ga = torch.autograd.grad(got.sum(), (q, k, p["v"]))
    gb = torch.autograd.grad(attention(q, k, v, backend="math", **kw).sum(), (q, k, p["v"]))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


def test_plain_call_fast_path_matches_dispatch_and_respects_restrictions(monkeypatch):
    """attention(q, k, v[, causal=True]) skips building a spec when SDPABackend.takes_plain says
    dispatch would pick sdpa; its output equals the dispatched sdpa backend's, and
    restrict_backends / anything unusual turns it off."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g) for n in (5, 7, 7))
    for causal in (False, True):
        fast = attention(q, k, v, causal=causal)
        full = attention(q, k, v, causal=causal, backend="sdpa")
        torch.testing.assert_close(fast, full, rtol=0, atol=0)
        ref = reference.run(build_spec(q.double(), k.double(), v.double(), causal=causal)).output
        assert_close(fast, ref.float(), torch.float32)
    calls = []
    real = SDPABackend.run_plain
    monkeypatch.setattr(SDPABackend, "run_plain", staticmethod(lambda *a: calls.append(a) or real(*a)))
    attention(q, k, v)
    assert len(calls) == 1
    with restrict_backends("math"):  # the restriction is honoured: the math backend runs it
        torch.testing.assert_close(attention(q, k, v), reference.run(build_spec(q, k, v)).output.float())
    assert len(calls) == 1
    assert SDPABackend.takes_plain(q, k, v, False)
    assert not SDPABackend.takes_plain(q, k[:, :1], v[:, :1], False)  # grouped-query: full path
    assert not SDPABackend.takes_plain(q[0], k[0], v[0], False)  # 3-D: full path
    assert not SDPABackend.takes_plain(q, k, v, "bottom_right")
    assert not SDPABackend.takes_plain(q.long(), k.long(), v.long(), False)  # a dtype SDPA does not take
    assert not SDPABackend.takes_plain(q[:, :, :0], k, v, False)  # no queries
    with pytest.raises(TypeError, match="floating point"):  # errors still come from the full path
        attention(q.long(), k.long(), v.long())


def test_sdpa_takes_plain_reads_the_declared_devices(monkeypatch):
    x = torch.randn(1, 2, 3, 4)
    assert SDPABackend.runs_on(x) and SDPABackend.takes_plain(x, x, x, True)
    monkeypatch.setattr(SDPABackend, "devices", ("cuda",))  # one declaration decides both paths
    assert not SDPABackend.runs_on(x) and not SDPABackend.takes_plain(x, x, x, True)
    assert "device 'cpu' not in ('cuda',)" in get_backend("sdpa").not_supported_reasons(build_spec(x, x, x))


def test_spec_device_type_without_building_a_device_name() -> None:
    q = torch.randn(1, 1, 2, 4)
    assert build_spec(q, q, q).device_type == "cpu"
    m = torch.empty(1, 1, 2, 4, device="meta")
    spec = build_spec(m, m, m)
    assert spec.device_type == "meta" == spec.device.type  # neither cpu nor cuda: asks the device
    assert "device 'meta' not in ('cpu', 'cuda')" in get_backend("math").not_supported_reasons(spec)
