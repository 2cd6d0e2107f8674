"""A ``--minutes`` budget decays the learning rate over the time spent, as ``--steps`` does over the steps."""

from __future__ import annotations

import types

import pytest
import torch

import attnkit.train.loop as loop
from attnkit.data import get_task
from attnkit.models import build_model, model_config_for_task
from attnkit.train import lr_at


def test_elapsed_fraction_drives_the_cosine_without_a_step_budget():
    kw = dict(lr=1.0, warmup=4, steps=None, min_lr_ratio=0.1)
    assert lr_at(2, elapsed=0.9, **kw) == 0.75  # warm-up still counts steps
    assert lr_at(10, elapsed=0.0, **kw) == 1.0
    assert lr_at(10, elapsed=0.5, **kw) == pytest.approx(0.55)  # half way down the cosine
    assert lr_at(10, elapsed=1.0, **kw) == pytest.approx(0.1)
    assert lr_at(10, elapsed=1.7, **kw) == pytest.approx(0.1)  # the last step may overrun the budget
    assert lr_at(10, elapsed=None, **kw) == 1.0  # neither budget: constant after warm-up
    # a step budget wins over the clock
    assert lr_at(9, lr=1.0, warmup=4, steps=14, min_lr_ratio=0.1, elapsed=0.0) == pytest.approx(0.55)


@pytest.mark.parametrize("budget", [dict(minutes=0.01), dict(steps=6)])
def test_the_loop_passes_the_spent_fraction_of_a_time_budget(budget, monkeypatch):
    seen = []
    real = loop.lr_at

    def spy(step, **kw):
        seen.append(kw["elapsed"])
        return real(step, **kw)

    monkeypatch.setattr(loop, "lr_at", spy)
    # the loop's clock advances 20 ms a reading, not with the machine: the 0.6 s budget is the same
    # number of steps however busy the cores are (it was one step, and a failure, under load)
    clock = iter(range(10**6))
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: next(clock) * 0.02))
    task = get_task("reverse", train=96, valid=8, test=8, min_len=2, max_len=4)
    torch.manual_seed(0)
    model = build_model(model_config_for_task("seq2seq", task, hidden_dim=16, embed_dim=8))
    loop.train(task, model, batch_size=16, eval_every=1000, eval_examples=8, warmup=0, progress=False,
               final_eval=False, **budget)
    assert len(seen) >= 2
    if "minutes" in budget:
        assert all(e is not None and e >= 0 for e in seen)
        assert seen == sorted(seen) and seen[-1] > 0
    else:
        assert seen == [None] * 6
