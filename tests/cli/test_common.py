"""cli._common: Python arguments in library errors are shown as the flags of the command."""

from __future__ import annotations

import argparse

from attnkit.cli import main
from attnkit.cli._common import add_train_flags, as_flags, flags_of


def test_flags_of_a_parser():
    p = argparse.ArgumentParser()
    add_train_flags(p)
    flags = flags_of(p)
    assert flags["batch_size"] == "--batch-size" and flags["lr"] == "--lr" and "help" not in flags


def test_as_flags_rewrites_arguments_only():
    flags = {"device": "--device", "lr": "--lr", "model": "--model", "hidden_dim": "--hidden-dim"}
    assert as_flags("device='tpu': use device='cpu'", flags) == "--device tpu: use --device cpu"
    assert as_flags("lr must be > 0, got 0.0", flags) == "--lr must be > 0, got 0.0"
    assert as_flags("hidden_dim=16 differs (use model='seq2seq')", flags) == (
        "--hidden-dim 16 differs (use --model seq2seq)"
    )
    untouched = "unknown model 'x'; a model must be registered; the --device flag; my_lr=3"
    assert as_flags(untouched, flags) == untouched


def test_the_cli_names_its_flags(capsys):
    assert main(["train", "reverse", "--lr", "0", "--steps", "1", "--task-option", "train=16"]) == 2
    assert "--lr must be > 0" in capsys.readouterr().err
    assert main(["train", "reverse", "--model", "transformer", "--cell", "lstm"]) == 2
    assert "--cell lstm configures the RNN seq2seq model" in capsys.readouterr().err
