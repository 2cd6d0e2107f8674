"""Per-model training defaults: the Transformer on dates selects on the whole validation split, the RNN keeps the task's."""

from __future__ import annotations

import argparse

from attnkit.cli.train import add_train_flags, build
from attnkit.data.dates import DatesTask


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_train_flags(p)
    return p.parse_args(list(argv))


def test_transformer_defaults_reach_only_its_own_task_object():
    opt = ["--task-option", "train=60", "--task-option", "valid=20", "--task-option", "test=20"]
    rnn_task, _ = build("dates", _args("--model", "seq2seq", *opt), attention=None)
    tf_task, tf = build("dates", _args("--model", "transformer", *opt), attention=None)
    again, _ = build("dates", _args("--model", "seq2seq", *opt), attention=None)  # compare builds them side by side
    assert tf.config["model"] == "transformer" and tf.config["dropout"] == 0.0
    assert tf_task.train_defaults["eval_examples"] == 500
    assert tf_task.train_defaults["lr"] == DatesTask.train_defaults["lr"]  # the rest is the task's
    assert rnn_task.train_defaults == again.train_defaults == DatesTask.train_defaults
    assert DatesTask.train_defaults["eval_examples"] == 300  # the class is untouched
