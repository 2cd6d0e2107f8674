"""The Transformer's feed-forward sublayer ``FFN(x) = W_2 act(W_1 x + b_1) + b_2``, worked by hand."""

from __future__ import annotations

import pytest
import torch

from attnkit.models.layers import ACTIVATIONS, FeedForward


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_feed_forward_activation_function_matches_the_module(name: str) -> None:
    torch.manual_seed(0)
    ff = FeedForward(4, hidden_dim=6, activation=name)
    x = torch.randn(2, 3, 4)
    want = ff.proj(ACTIVATIONS[name]()(ff.fc(x)))
    torch.testing.assert_close(ff(x), want, rtol=0, atol=0)
    assert f"activation={name!r}" in repr(ff)
    # relu by hand: W2 relu(W1 x + b1) + b2 with W1 = 0, W2 = 1, b2 = 0
    if name == "relu":
        with torch.no_grad():
            ff.fc.weight.zero_()
            ff.fc.bias.copy_(torch.tensor([1.0, -1.0, 2.0, 0.0, -3.0, 0.5]))
            ff.proj.weight.fill_(1.0)
            ff.proj.bias.zero_()
        assert ff(torch.zeros(1, 1, 4)).flatten().tolist() == [3.5] * 4  # 1 + 2 + 0.5
