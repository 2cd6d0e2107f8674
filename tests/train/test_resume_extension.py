"""Extending a run is exact: the schedule belongs to the run (``decay_steps``), not to the budget.

The README's sentence, as written: ``--steps N --decay-steps 2N`` + ``--resume --steps 2N`` gives
the weights of ``--steps 2N`` in one run; every tensor of the last checkpoint is compared.
"""

from __future__ import annotations

import pytest

import attnkit.train.loop as loop
from attnkit.cli import main
from attnkit.train import load_checkpoint, lr_at, resolve_options, resume_run, train
from tests.train import child_run

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def run(out, attention, **kw):
    task, model = child_run.build(attention)
    return train(task, model, seed=7, out_dir=out, **child_run.RUN, **kw)


assert_same_tensors = child_run.assert_same_tensors


@pytest.mark.parametrize(
    "attention", ["bahdanau", "hard"]
)  # deterministic; REINFORCE (sampled alignments, a baseline buffer)
def test_n_steps_on_the_2n_schedule_resumed_to_2n_is_the_2n_step_run(tmp_path, attention):
    straight = run(tmp_path / "straight", attention, steps=16)
    run(tmp_path / "parts", attention, steps=8, decay_steps=16)
    resumed = resume_run(tmp_path / "parts", steps=16, progress=False)
    assert_same_tensors(tmp_path / "straight", tmp_path / "parts")
    for k in ("steps", "valid_exact_match", "exact_match", "token_error_rate"):
        assert resumed[k] == straight[k], k


def test_extending_without_decay_steps_is_the_run_with_the_first_horizon(tmp_path):
    run(tmp_path / "straight", "bahdanau", steps=16, decay_steps=8)
    run(tmp_path / "parts", "bahdanau", steps=8)
    resume_run(tmp_path / "parts", steps=16, progress=False)
    assert_same_tensors(tmp_path / "straight", tmp_path / "parts")


def test_past_the_horizon_the_rate_stays_at_its_floor(tmp_path, monkeypatch):
    # by hand: warmup 2, horizon 8, lr 4e-3, floor 0.05 * 4e-3 = 2e-4 from step 8 on (no jump back up)
    assert lr_at(8, lr=4e-3, warmup=2, steps=8, min_lr_ratio=0.05) == pytest.approx(2e-4)
    assert lr_at(15, lr=4e-3, warmup=2, steps=8, min_lr_ratio=0.05) == pytest.approx(2e-4)
    run(tmp_path, "bahdanau", steps=8, lr=4e-3, min_lr_ratio=0.05)
    rates = []
    real = loop.lr_at
    monkeypatch.setattr(
        loop, "lr_at", lambda step, **kw: rates.append((step, kw["steps"], real(step, **kw))) or rates[-1][2]
    )
    resume_run(tmp_path, steps=12, progress=False)
    assert [s for s, _, _ in rates] == [8, 9, 10, 11] and {h for _, h, _ in rates} == {8}
    assert [r for _, _, r in rates] == [pytest.approx(2e-4)] * 4


def test_decay_steps_resolution_by_hand():
    assert resolve_options("reverse", "seq2seq", steps=10).decay_steps == 10  # a new run: its budget
    assert resolve_options("reverse", "seq2seq", steps=10, decay_steps=30).decay_steps == 30
    saved = resolve_options("reverse", "seq2seq", steps=10, decay_steps=30).to_json()
    assert resolve_options("reverse", "seq2seq", saved=saved, steps=50).decay_steps == 30  # kept on extension
    old = {k: v for k, v in saved.items() if k != "decay_steps"}  # a run saved before the horizon was recorded
    assert resolve_options("reverse", "seq2seq", saved=old, steps=50).decay_steps == 10
    assert resolve_options("reverse", "seq2seq", minutes=1.0).decay_steps is None  # the clock drives the cosine
    with pytest.raises(ValueError, match="decay_steps must be a positive int, got 0"):
        resolve_options("reverse", "seq2seq", steps=10, decay_steps=0)


TINY = [
    "--task-option",
    "train=96",
    "--task-option",
    "valid=8",
    "--task-option",
    "test=8",
    "--task-option",
    "max_len=4",
    "--task-option",
    "min_len=2",
    "--hidden-dim",
    "16",
    "--embed-dim",
    "8",
    "--batch-size",
    "16",
    "--eval-every",
    "3",
    "--seed",
    "3",
    "--json",
]


def test_the_readme_commands_n_steps_then_resume_to_2n_equal_2n_steps(tmp_path, capsys):
    """README: ``attnkit train reverse --steps N --decay-steps 2N --out D`` then
    ``attnkit train --resume D --steps 2N`` gives the weights of ``--steps 2N`` in one run.
    At this size the preset's 100 warm-up steps cover the run: the commands, the saved horizon and
    the data and RNG continuation are checked here, the schedule past warm-up by the tests above."""
    assert main(["train", "reverse", "--steps", "12", "--out", str(tmp_path / "one"), *TINY]) == 0
    assert main(["train", "reverse", "--steps", "6", "--decay-steps", "12", "--out", str(tmp_path / "two"), *TINY]) == 0
    assert main(["train", "--resume", str(tmp_path / "two"), "--steps", "12", "--json"]) == 0
    _, meta = load_checkpoint(tmp_path / "two", "last")
    assert meta["train"]["options"]["decay_steps"] == 12 and meta["step"] == 12
    capsys.readouterr()
    assert_same_tensors(tmp_path / "one", tmp_path / "two")
