"""ring_attention / ulysses_attention / shard_sequence on 2- and 4-process gloo worlds (CPU) against
single-process attention() (float32 within 1e-5), and every bad input's error before any hang."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.distributed import merge_partial, ring_attention, shard_sequence, unshard_sequence

from . import workers

TOL = 1e-5
SCORES = ("scaled_dot", "additive", "user")

CASES2 = [(f"{s}-{'causal' if c else 'full'}-{lay}-{m}", {"score": s, "causal": c, "layout": lay, "mask": m})
          for s in SCORES for c in (False, True) for lay in ("zigzag", "contiguous") for m in ("none", "padding")]
CASES2 += [
    ("gqa-causal-zigzag-padding", {"score": "scaled_dot", "causal": True, "layout": "zigzag", "mask": "padding",
                                   "H": 4, "Hk": 2}),
    ("additive-chunked-causal-zigzag", {"score": "additive", "causal": True, "layout": "zigzag", "mask": "padding",
                                        "backend": "chunked"}),
    ("user-chunked-causal-contiguous", {"score": "user", "causal": True, "layout": "contiguous", "mask": "none",
                                        "backend": "chunked"}),
    ("scaled_dot-math-causal-zigzag-padding", {"score": "scaled_dot", "causal": True, "layout": "zigzag",
                                               "mask": "padding", "backend": "math"}),
    ("dot-sdpa-causal-contiguous-padding", {"score": "dot", "causal": True, "layout": "contiguous",
                                            "mask": "padding", "backend": "sdpa"}),
    ("float64-scaled_dot-full-zigzag-padding", {"score": "scaled_dot", "causal": False, "layout": "zigzag",
                                                "mask": "padding", "dtype": torch.float64}),
    ("float64-additive-causal-zigzag", {"score": "additive", "causal": True, "layout": "zigzag", "mask": "padding",
                                        "dtype": torch.float64}),
]
ULYSSES = [(f"ulysses-{s}-{lay}-{m}", {"fn": workers.ulysses_case, "score": s, "causal": True, "layout": lay,
                                       "mask": m}) for s in ("scaled_dot", "user") for lay in ("zigzag", "contiguous")
           for m in ("none", "padding")]
DROPOUT = [(f"dropout-{s}-{lay}", {"fn": workers.dropout_case, "score": s, "causal": True, "layout": lay})
           for s in ("scaled_dot", "additive") for lay in ("zigzag", "contiguous")]
ROUNDTRIP = [(f"roundtrip-{lay}", {"fn": workers.roundtrip_case, "layout": lay}) for lay in ("zigzag", "contiguous")]
#: bad input -> words its error must contain
BAD = {
    "length": ["length 10", "4 equal chunks", "pad it to a multiple of 4"],
    "odd_shard": ["positive multiple of 2", "shard_sequence"],
    "mismatch": ["shards differ across ranks", "rank 0: q=(1, 2, 4, 4)", "rank 1: q=(1, 2, 2, 4)"],
    "one_rank_refuses": ["rank(s) 1 refused their inputs"],
    "one_rank_refuses_ulysses": ["rank(s) 1 refused their inputs"],
    "mismatch_unshard": ["shards differ across ranks", "x=(2, 4)", "x=(2, 6)"],
    "bottom_right": ["causal must be True, False or 'top_left'"],
    "query_mask": ["mask over this rank's keys", "causal=True"],
    "location": ["'location' reads key positions"],
    "causal_lengths": ["as many queries as keys"],
    "ulysses_heads": ["3 query heads", "divide by the 2 ranks", "ring_attention"],
    "ulysses_score": ["holds tensors", "use ring_attention"],
    "sdpa_additive": ["backend='sdpa' runs the plain dot scores", "backend='auto'"],
    "no_all_to_all": ["needs all_to_all", "'gloo' does not implement", "use ring_attention"],
}
BAD_CASES = [(f"bad-{w}", {"fn": workers.bad_case, "which": w}) for w in BAD]

CASES4 = [
    ("scaled_dot-causal-zigzag-padding", {"score": "scaled_dot", "causal": True, "layout": "zigzag",
                                          "mask": "padding"}),
    ("additive-causal-zigzag-none", {"score": "additive", "causal": True, "layout": "zigzag", "mask": "none"}),
    ("additive-causal-contiguous-padding", {"score": "additive", "causal": True, "layout": "contiguous",
                                            "mask": "padding"}),
    ("user-full-zigzag-padding", {"score": "user", "causal": False, "layout": "zigzag", "mask": "padding"}),
    ("user-causal-zigzag-none", {"score": "user", "causal": True, "layout": "zigzag", "mask": "none"}),
    ("ulysses-scaled_dot-zigzag-padding", {"fn": workers.ulysses_case, "score": "scaled_dot", "causal": True,
                                           "layout": "zigzag", "mask": "padding"}),
    ("dropout-additive-zigzag", {"fn": workers.dropout_case, "score": "additive", "causal": True,
                                 "layout": "zigzag"}),
    ("roundtrip-zigzag", {"fn": workers.roundtrip_case, "layout": "zigzag"}),
]


README = [("readme", {"fn": workers.readme_case})]


@pytest.fixture(scope="module")
def world2() -> dict:
    return workers.launch(2, workers.ring_cases, CASES2 + ULYSSES + DROPOUT + ROUNDTRIP + BAD_CASES + README)


@pytest.fixture(scope="module")
def world4() -> dict:
    return workers.launch(4, workers.ring_cases, CASES4)


def _check_parity(res: dict) -> None:
    assert "error" not in res, res["error"]
    errs = {k: v for k, v in res.items() if k not in ("finite", "masked_rows_zero")}
    assert all(v <= TOL for v in errs.values()), errs  # NaN fails too
    assert res.get("finite", 1.0) == 1.0
    assert res.get("masked_rows_zero", 1.0) == 1.0


@pytest.mark.parametrize("name", [n for n, _ in CASES2 + ULYSSES])
def test_parity_two_ranks(world2, name):
    _check_parity(world2[name])


@pytest.mark.parametrize("name", [n for n, kw in CASES4 if kw.get("fn") in (None, workers.ulysses_case)])
def test_parity_four_ranks(world4, name):
    _check_parity(world4[name])


@pytest.mark.parametrize("world,name", [("world2", n) for n, _ in DROPOUT] + [("world4", "dropout-additive-zigzag")])
def test_dropout_backward_is_the_derivative(request, world, name):
    res = request.getfixturevalue(world)[name]
    assert "error" not in res, res["error"]
    assert res["rel"] < 1e-6, res
    assert res["changed"] > 1e-3, "dropout_p=0.3 left the output unchanged"


@pytest.mark.parametrize("world,name", [("world2", n) for n, _ in ROUNDTRIP] + [("world4", "roundtrip-zigzag")])
def test_shard_unshard_round_trip(request, world, name):
    res = request.getfixturevalue(world)[name]
    assert res == {"equal": 1.0, "grad": 0.0}


@pytest.mark.parametrize("which", list(BAD))
def test_bad_input_raises_before_any_collective_hangs(world2, which):
    err = world2[f"bad-{which}"]["error"]
    assert err, f"{which}: no error raised"
    for words in BAD[which]:
        assert words in err, err


def test_readme_snippet_runs_and_matches_one_process(world2):
    res = world2["readme"]
    assert "error" not in res, res["error"]
    assert res["out"] <= TOL and res["grad"] == 1.0, res


def test_uninitialised_group_names_the_fix():
    x = torch.randn(1, 1, 4, 2)
    for call in (lambda: ring_attention(x, x, x), lambda: shard_sequence(x, 2), lambda: unshard_sequence(x, 2)):
        with pytest.raises(ValueError, match="not initialised; call torch.distributed.init_process_group"):
            call()


def test_merge_partial_by_hand():
    # two halves of keys for one query: scores [0, log 3] | [log 2], values 1, 2 | 4
    # full softmax: exp(s) = 1, 3, 2 -> weights 1/6, 3/6, 2/6 -> output (1 + 6 + 8) / 6 = 2.5, lse = log 6
    o1, l1 = torch.tensor([[(1 * 1 + 3 * 2) / 4.0]]), torch.tensor([math.log(4.0)])
    o2, l2 = torch.tensor([[4.0]]), torch.tensor([math.log(2.0)])
    out, lse = merge_partial(o1, l1, o2, l2)
    assert torch.allclose(out, torch.tensor([[2.5]])) and torch.allclose(lse, torch.tensor([math.log(6.0)]))
    # a row with no allowed key in either part stays 0, -inf (never NaN from -inf - -inf)
    ninf = torch.tensor([float("-inf")])
    out, lse = merge_partial(torch.zeros(1, 1), ninf, torch.zeros(1, 1), ninf)
    assert out.item() == 0.0 and lse.item() == float("-inf")
