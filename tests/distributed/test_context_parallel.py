"""MultiHeadAttention and GPT with context_parallel on a 2-process gloo world: outputs, losses and
gradients equal the single-process ones (float32 within 1e-5)."""

from __future__ import annotations

import pytest

from . import model_workers, workers

TOL = 1e-5
MHA = [(f"mha-{s}-{lay}-{'rope' if r else 'plain'}", {"fn": model_workers.mha_case, "score": s, "layout": lay,
                                                       "rope": r})
       for s in ("scaled_dot", "additive") for lay in ("zigzag", "contiguous") for r in (False, True)]
GPT = [(f"gpt-{pos}-{s}-{lay}-{'manager' if m else 'attribute'}",
        {"fn": model_workers.gpt_case, "positional": pos, "score": s, "layout": lay, "manager": m})
       for pos, s, lay, m in (("learned", "scaled_dot", "zigzag", False), ("rope", "scaled_dot", "zigzag", True),
                              ("learned", "additive", "contiguous", False), ("rope", "additive", "zigzag", False))]


@pytest.fixture(scope="module")
def world2() -> dict:
    return workers.launch(2, workers.ring_cases, MHA + GPT)


@pytest.mark.parametrize("name", [n for n, _ in MHA])
def test_multihead_context_parallel_matches_one_process(world2, name):
    res = world2[name]
    assert "error" not in res, res["error"]
    assert res["out"] <= TOL and res["grads"] <= TOL, res


@pytest.mark.parametrize("name", [n for n, _ in GPT])
def test_gpt_context_parallel_matches_one_process(world2, name):
    res = world2[name]
    assert "error" not in res, res["error"]
    assert res["loss"] <= TOL and res["grads"] <= TOL, res
    assert res["tokens"] == 2 * 8  # this rank's half of the 2 x 16 targets
