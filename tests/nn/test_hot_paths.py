"""The Transformer training step's short cuts give the numbers of the general paths.

MultiHeadAttention's plain self-attention calls SDPA itself (``direct_sdpa``) instead of
going through ``attention()``; the learned position table is sliced instead of gathered;
the feed-forward sublayer calls its activation as a function.
"""

from __future__ import annotations

import pytest
import torch

from attnkit.backends import restrict_backends
from attnkit.backends.sdpa import SDPABackend
from attnkit.core import reference
from attnkit.functional import build_spec
from attnkit.models.layers import ACTIVATIONS, FeedForward
from attnkit.nn import MultiHeadAttention
from attnkit.nn._common import direct_sdpa, record_specs
from attnkit.nn.positional import LearnedPositionalEncoding


def test_direct_sdpa_reads_devices_that_sdpa_serves() -> None:
    # direct_sdpa tests is_cpu / is_cuda instead of device.type: it must cover SDPABackend.devices exactly
    assert SDPABackend.devices == ("cpu", "cuda")
    x = torch.randn(2, 3, 8)
    assert direct_sdpa(x)
    assert not direct_sdpa(x.long())  # a dtype SDPA does not take
    assert not direct_sdpa(x[:, :0])  # no positions
    with restrict_backends("math"):
        assert not direct_sdpa(x)
    with record_specs():
        assert not direct_sdpa(x)


@pytest.mark.parametrize("causal", [False, True])
def test_plain_self_attention_matches_the_dispatched_and_reference_paths(causal: bool) -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, num_heads=4)
    x = torch.randn(3, 5, 16, requires_grad=True)
    fast = mha(x, causal=causal).context  # direct SDPA
    with restrict_backends("math"):  # the same module through attention() on the math backend
        slow = mha(x, causal=causal).context
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    g_fast = torch.autograd.grad(fast.square().sum(), (x, mha.in_proj_weight))
    g_slow = torch.autograd.grad(slow.square().sum(), (x, mha.in_proj_weight))
    for a, b in zip(g_fast, g_slow):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # and by hand from the float64 reference: project, split heads, attend, merge, project out
    with torch.no_grad():
        xd = x.double()
        q, k, v = torch.nn.functional.linear(xd, mha.in_proj_weight.double(), mha.in_proj_bias.double()).split(16, -1)
        heads = [t.reshape(3, 5, 4, 4).transpose(1, 2) for t in (q, k, v)]  # (B, H, L, Dh)
        ctx = reference.run(build_spec(*heads, causal=causal)).output  # (B, H, L, Dh)
        want = mha.out_proj.double()(ctx.transpose(1, 2).reshape(3, 5, 16))
    torch.testing.assert_close(fast.double(), want, rtol=1e-5, atol=1e-6)


def test_recording_specs_still_sees_the_plain_call() -> None:
    mha = MultiHeadAttention(8, num_heads=2)
    with torch.no_grad(), record_specs() as specs:
        mha(torch.randn(1, 3, 8), causal=True)
    assert len(specs) == 1 and specs[0].causal


def test_learned_positions_slice_equals_the_gather() -> None:
    torch.manual_seed(0)
    pe = LearnedPositionalEncoding(4, max_len=10)
    x = torch.zeros(2, 3, 4)
    for offset in (0, 7):
        sliced = pe(x, offset=offset)  # rows offset..offset+2 of the table
        gathered = pe(x, positions=torch.arange(offset, offset + 3))
        torch.testing.assert_close(sliced, gathered, rtol=0, atol=0)
        torch.testing.assert_close(sliced[0], pe.embedding.weight[offset:offset + 3].detach(), rtol=0, atol=0)
    # the gradient reaches exactly the rows that were read: each of them twice (batch of 2)
    pe.zero_grad()
    pe(x, offset=2).sum().backward()
    want = torch.zeros(10, 4)
    want[2:5] = 2.0
    torch.testing.assert_close(pe.embedding.weight.grad, want)
    with pytest.raises(ValueError, match="past max_len=10"):
        pe(x, offset=8)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_feed_forward_activation_function_matches_the_module(name: str) -> None:
    torch.manual_seed(0)
    ff = FeedForward(4, hidden_dim=6, activation=name)
    x = torch.randn(2, 3, 4)
    want = ff.proj(ACTIVATIONS[name]()(ff.fc(x)))
    torch.testing.assert_close(ff(x), want, rtol=0, atol=0)
    assert f"activation={name!r}" in repr(ff)
    # relu by hand: W2 relu(W1 x + b1) + b2 with W1 = I-ish
    if name == "relu":
        with torch.no_grad():
            ff.fc.weight.zero_(); ff.fc.bias.copy_(torch.tensor([1.0, -1.0, 2.0, 0.0, -3.0, 0.5]))
            ff.proj.weight.fill_(1.0); ff.proj.bias.zero_()
        assert ff(torch.zeros(1, 1, 4)).flatten().tolist() == [3.5] * 4  # 1 + 2 + 0.5


def test_spec_device_type_without_building_a_device_name() -> None:
    q = torch.randn(1, 1, 2, 4)
    assert build_spec(q, q, q).device_type == "cpu"
    m = torch.empty(1, 1, 2, 4, device="meta")
    spec = build_spec(m, m, m)
    assert spec.device_type == "meta" == spec.device.type  # neither cpu nor cuda: asks the device
    from attnkit.backends import get_backend

    assert "device 'meta' not in ('cpu', 'cuda')" in get_backend("math").not_supported_reasons(spec)
