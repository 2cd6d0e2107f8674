"""Per-model training defaults: the Transformer on dates selects on the whole validation split, the RNN keeps its own."""

from __future__ import annotations

import argparse

from attnkit.cli.train import add_train_flags, build
from attnkit.presets import train_options


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_train_flags(p)
    return p.parse_args(list(argv))


def test_transformer_defaults_reach_only_its_own_task_object():
    opt = ["--task-option", "train=60", "--task-option", "valid=20", "--task-option", "test=20"]
    rnn_task, rnn = build("dates", _args("--model", "seq2seq", *opt), attention=None)
    tf_task, tf = build("dates", _args("--model", "transformer", *opt), attention=None)
    assert tf.config["model"] == "transformer" and tf.config["dropout"] == 0.0
    tf_opts = train_options(tf_task.name, tf.config["model"])
    rnn_opts = train_options(rnn_task.name, rnn.config["model"])
    assert tf_opts["eval_examples"] == 500
    assert tf_opts["lr"] == rnn_opts["lr"]  # the rest is the task's
    assert rnn_opts["eval_examples"] == 300  # the RNN's are untouched
    assert not hasattr(tf_task, "train_defaults")  # tasks describe data only
