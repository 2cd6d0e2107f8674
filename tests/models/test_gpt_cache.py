"""GPT's KV-cached generation: the cache is written while the context fits in block_size and never
after (a sliding window shifts every position: nothing cached stays valid, so the window is run as
uncached generation runs it), and each cached step runs one token."""

from __future__ import annotations

import pytest
import torch

from attnkit.models import GPT
from attnkit.nn.kv_cache import KVCache


@pytest.fixture
def appended(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of positions of every KVCache.append call."""
    seen: list[int] = []
    original = KVCache.append

    def spy(self: KVCache, k: torch.Tensor, v: torch.Tensor):  # type: ignore[no-untyped-def]
        seen.append(k.shape[2])
        return original(self, k, v)

    monkeypatch.setattr(KVCache, "append", spy)
    return seen


def test_cache_fills_to_the_block_then_is_not_written(appended: list[int]) -> None:
    torch.manual_seed(0)
    gpt = GPT(11, block_size=8, num_layers=2, num_heads=2, dim=8)
    prompt = torch.tensor([[1, 2, 3]])
    out = gpt.generate(prompt, max_new_tokens=20, temperature=0.0)
    assert out.shape == (1, 23)
    # per layer: the 3 prompt tokens in one call, then one token per step up to 8 positions (5 steps);
    # the 15 steps with a full, sliding window append nothing (before: 8 positions each, after a reset)
    assert appended == [3, 3] + [1, 1] * 5
    assert torch.equal(out, gpt.generate(prompt, max_new_tokens=20, temperature=0.0, use_cache=False))


def test_a_cached_step_runs_only_the_new_token(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    gpt = GPT(11, block_size=16, num_layers=1, num_heads=2, dim=8)
    fed: list[int] = []
    original = GPT.forward

    def spy(self: GPT, idx: torch.Tensor, **kw):  # type: ignore[no-untyped-def]
        fed.append(idx.shape[1])
        return original(self, idx, **kw)

    monkeypatch.setattr(GPT, "forward", spy)
    gpt.generate(torch.tensor([[1, 2, 3, 4]]), max_new_tokens=6, temperature=0.0)
    assert fed == [4, 1, 1, 1, 1, 1]
    fed.clear()
    gpt.generate(torch.tensor([[1, 2, 3, 4]]), max_new_tokens=6, temperature=0.0, use_cache=False)
    assert fed == [4, 5, 6, 7, 8, 9]
