"""Per-model training defaults: the Transformer on dates selects on the whole validation split, the RNN
keeps the task's; they come from attnkit.presets and never touch the task object."""

from __future__ import annotations

import argparse

from attnkit.cli._common import add_train_flags, build
from attnkit.train import model_name, resolve_options


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_train_flags(p)
    return p.parse_args(list(argv))


def test_transformer_defaults_reach_only_its_own_runs():
    opt = ["--task-option", "train=60", "--task-option", "valid=20", "--task-option", "test=20"]
    rnn_task, rnn = build("dates", _args("--model", "seq2seq", *opt), attention=None)
    tf_task, tf = build("dates", _args("--model", "transformer", *opt), attention=None)
    # compare builds them side by side
    again_task, again = build("dates", _args("--model", "seq2seq", *opt), attention=None)
    assert tf.config["model"] == "transformer" and tf.config["dropout"] == 0.0
    tf_opts = resolve_options(tf_task.name, model_name(tf))
    rnn_opts = resolve_options(rnn_task.name, model_name(rnn))
    assert tf_opts.eval_examples == 500
    assert tf_opts.lr == rnn_opts.lr == 4e-3 and tf_opts.steps == rnn_opts.steps == 500  # the rest is the task's
    assert rnn_opts == resolve_options(again_task.name, model_name(again))
    assert rnn_opts.eval_examples == 300
    for task in (rnn_task, tf_task, again_task):  # the task objects are untouched
        assert "train_defaults" not in vars(task)


def test_the_callers_options_win_and_a_time_budget_drops_the_step_budget():
    assert resolve_options("dates", "transformer", lr=1e-3).lr == 1e-3
    timed = resolve_options("dates", "seq2seq", minutes=2.0)
    assert timed.steps is None and timed.minutes == 2.0
    resumed = resolve_options("dates", "seq2seq", saved={"steps": None, "minutes": 1.0, "lr": 5e-4}, steps=50)
    assert (resumed.steps, resumed.minutes, resumed.lr) == (50, 1.0, 5e-4)
