"""Hand-computed numbers for SE, CBAM, SigmaPi and the positional encodings."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.functional import attention
from attnkit.nn import (
    CBAM,
    ALiBi,
    LearnedPositionalEncoding,
    SigmaPi,
    SinusoidalPositionalEncoding,
    SpatialAttention,
    SqueezeExcite,
)
from attnkit.nn.vision import make_divisible

D64 = torch.float64


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_squeeze_excite_hand_numbers():
    se = SqueezeExcite(2, rd_channels=1, dtype=D64)
    with torch.no_grad():
        se.fc1.weight.copy_(torch.tensor([[1.0, 1.0]]).view(1, 2, 1, 1)), se.fc1.bias.zero_()
        se.fc2.weight.copy_(torch.tensor([[1.0], [-1.0]]).view(2, 1, 1, 1)), se.fc2.bias.zero_()
    x = torch.stack([torch.ones(3, 3), 3 * torch.ones(3, 3)]).unsqueeze(0).to(D64)  # GAP = [1, 3]
    y, m = se(x, return_map=True)  # W1: 1 + 3 = 4; relu 4; W2: [4, -4]
    torch.testing.assert_close(m.view(2), torch.tensor([sig(4), sig(-4)], dtype=D64))
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor([sig(4), 3 * sig(-4)], dtype=D64))
    assert se(x).shape == x.shape


def test_se_and_cbam_use_timm_names_and_rounding():
    assert make_divisible(64 / 16, 8, round_limit=0.0) == 8
    assert SqueezeExcite(64).fc1.out_channels == 8  # timm SEModule: rd_divisor 8
    assert CBAM(64).channel.fc1.out_channels == 4  # timm CbamModule: rd_divisor 1
    assert set(SqueezeExcite(32).state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    keys = set(CBAM(32).state_dict())
    assert {"channel.fc1.weight", "channel.fc2.weight", "spatial.conv.conv.weight", "spatial.conv.bn.weight",
            "spatial.conv.bn.running_mean"} <= keys
    assert "channel.fc1.bias" not in keys  # mlp_bias=False
    with pytest.raises(ValueError, match="rd_ratio"):
        SqueezeExcite(8, rd_ratio=2.0)
    with pytest.raises(ValueError, match="built for 8 channels but x has 4"):
        SqueezeExcite(8)(torch.randn(1, 4, 2, 2))
    with pytest.raises(ValueError, match="kernel_size must be an odd"):
        SpatialAttention(4)


def test_cbam_hand_numbers():
    cbam = CBAM(2, rd_channels=1, spatial_kernel_size=1, dtype=D64).eval()
    with torch.no_grad():
        cbam.channel.fc1.weight.zero_(), cbam.channel.fc2.weight.zero_()  # channel gate σ(0 + 0) = 0.5
        cbam.spatial.conv.conv.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))  # reads mean_c
    x = torch.tensor([1.0, 3.0], dtype=D64).view(1, 2, 1, 1)
    y, maps = cbam(x, return_map=True)
    torch.testing.assert_close(maps["channel"].view(2), torch.tensor([0.5, 0.5], dtype=D64))
    # x' = [0.5, 1.5]; mean_c = 1; BN in eval (mean 0, var 1): 1 / sqrt(1 + 1e-5)
    s = sig(1 / math.sqrt(1 + 1e-5))
    torch.testing.assert_close(maps["spatial"].view(1), torch.tensor([s], dtype=D64))
    torch.testing.assert_close(y.view(2), torch.tensor([0.5 * s, 1.5 * s], dtype=D64))


def test_spatial_attention_mean_then_max_channels():
    sa = SpatialAttention(1, dtype=D64).eval()
    with torch.no_grad():
        sa.conv.conv.weight.copy_(torch.tensor([0.0, 1.0]).view(1, 2, 1, 1))  # reads max_c
    x = torch.tensor([[[[1.0, -2.0]], [[0.0, -1.0]]]], dtype=D64)  # (1, 2, 1, 2): max_c = [1, -1]
    _, m = sa(x, return_map=True)
    e = 1 / math.sqrt(1 + 1e-5)
    torch.testing.assert_close(m.view(2), torch.tensor([sig(e), sig(-e)], dtype=D64))


def test_sigma_pi_hand_numbers():
    sp = SigmaPi(2, out_features=1, conjuncts=[(0,), (1,), (0, 1)], dtype=D64)
    with torch.no_grad():
        sp.weight.copy_(torch.tensor([[1.0, 1.0, 1.0]])), sp.bias.zero_()
    assert sp(torch.tensor([2.0, 3.0], dtype=D64)).item() == 11.0  # 2 + 3 + 2·3
    with torch.no_grad():
        sp.weight.copy_(torch.tensor([[0.5, -1.0, 2.0]])), sp.bias.fill_(1.0)
    assert sp(torch.tensor([[2.0, 3.0]], dtype=D64)).item() == 1.0 - 3.0 + 12.0 + 1.0
    sp3 = SigmaPi(3, order=3)
    assert len(sp3.conjuncts) == 7 and sp3.weight.shape == (3, 7)  # 3 singles, 3 pairs, 1 triple
    with pytest.raises(ValueError, match="index outside"):
        SigmaPi(2, conjuncts=[(0, 2)])


def test_sinusoidal_hand_numbers():
    pe = SinusoidalPositionalEncoding(4, dtype=D64)
    y = pe(torch.zeros(1, 2, 4, dtype=D64))
    torch.testing.assert_close(y[0, 0], torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=D64))
    expected = torch.tensor([math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)], dtype=D64)
    torch.testing.assert_close(y[0, 1], expected)
    torch.testing.assert_close(pe(torch.zeros(1, 1, 4, dtype=D64), offset=1)[0, 0], y[0, 1])


def test_learned_positions_and_max_len():
    pe = LearnedPositionalEncoding(3, max_len=4)
    x = torch.zeros(2, 4, 3)
    torch.testing.assert_close(pe(x)[1], pe.embedding.weight)
    with pytest.raises(ValueError, match="past max_len=4"):
        pe(x, offset=1)


def test_alibi_slopes_and_score_mod():
    torch.testing.assert_close(ALiBi(8).slopes, torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    # 6 heads: the 4-head slopes 2^-2, 2^-4, 2^-6, 2^-8, then every other 8-head slope 2^-1, 2^-3
    torch.testing.assert_close(ALiBi(6).slopes, torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]))
    al = ALiBi(2)
    b = al.bias(3)  # 2 heads: slopes 2^-4, 2^-8
    torch.testing.assert_close(b[0], -(2.0**-4) * torch.tensor([[0.0, 1, 2], [1, 0, 1], [2, 1, 0]]))
    q = k = v = torch.randn(1, 2, 3, 4, dtype=D64)
    a = attention(q, k, v, score_mod=al.score_mod(), causal=True, backend="reference")
    r = attention(q, k, v, mask=al.bias(3, dtype=D64), causal=True, backend="reference")
    torch.testing.assert_close(a, r)


def test_learned_positions_slice_equals_the_gather():
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
