"""Ctrl-C in the middle of a step's forward: resuming gives the weights of the uninterrupted run.

A forward pass draws random numbers and updates buffers (the REINFORCE baseline of
``--attention hard``, batch-norm statistics); a step cut before its update must leave
neither behind. Real processes get a real SIGINT at a controlled point: inside the forward,
after the baseline (hard) or the encoder (bahdanau) has run.
"""

from __future__ import annotations

import signal

import pytest
import torch

from attnkit.train import load_checkpoint, resume_run, train
from attnkit.train.snapshot import StepSnapshot
from tests.train import child_run

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


build, assert_same_tensors = child_run.build, child_run.assert_same_tensors


@pytest.mark.parametrize("attention", ["bahdanau", "hard"])
@pytest.mark.parametrize("cut", [3, 6])  # before the first periodic checkpoint (step 4) / after it
def test_keyboard_interrupt_inside_the_forward_resumes_exactly(tmp_path, attention, cut):
    task, model = build(attention)
    train(task, model, steps=10, seed=7, out_dir=tmp_path / "straight", **child_run.RUN)
    task, model = build(attention)
    calls = [0]

    def hook(module, args, output):  # the baseline has just updated its running mean of the reward
        if module.training:
            calls[0] += 1
            if calls[0] == cut:
                raise KeyboardInterrupt

    (model.baseline if attention == "hard" else model.encoder).register_forward_hook(hook)
    with pytest.raises(KeyboardInterrupt):
        train(task, model, steps=10, seed=7, out_dir=tmp_path / "cut", **child_run.RUN)
    _, meta = load_checkpoint(tmp_path / "cut", "last")
    assert meta["step"] == cut - 1  # the cut step never happened
    resume_run(tmp_path / "cut", progress=False)
    assert_same_tensors(tmp_path / "straight", tmp_path / "cut")


@pytest.mark.parametrize("attention", ["bahdanau", "hard"])
def test_sigint_to_a_real_process_inside_the_forward_resumes_exactly(tmp_path, attention):
    child_run.run(tmp_path / "straight", 10, attention)
    d = tmp_path / "cut"
    proc = child_run.spawn(d, 10, attention, mode="forward", pause_at=6)  # paused inside the forward of step 6
    try:
        child_run.wait_ready(d, proc)
        proc.send_signal(signal.SIGINT)
        assert child_run.finish(proc) == 130, proc.err_text
    finally:
        if proc.poll() is None:
            proc.kill()
    _, meta = load_checkpoint(d, "last")
    assert meta["step"] == 5
    child_run.run(d, 10, attention, mode="resume")
    assert_same_tensors(tmp_path / "straight", d)


def test_the_snapshot_rewinds_batch_norm_statistics_and_the_rng():
    # by hand: BatchNorm1d(1), momentum 0.1, batch [1, 3]: running_mean 0 -> 0.1 * 2 = 0.2,
    # running_var 1 -> 0.9 + 0.1 * 2 (unbiased variance of [1, 3]) = 1.1, num_batches_tracked 0 -> 1
    bn = torch.nn.BatchNorm1d(1).train()
    snap = StepSnapshot(bn, torch.device("cpu"))
    assert snap.names == ("running_mean", "running_var", "num_batches_tracked")
    snap.take()
    first = torch.rand(3)
    bn(torch.tensor([[1.0], [3.0]]))
    assert bn.running_mean.item() == pytest.approx(0.2) and bn.running_var.item() == pytest.approx(1.1)
    assert bn.num_batches_tracked.item() == 1
    snap.restore()
    assert bn.running_mean.item() == 0.0 and bn.running_var.item() == 1.0 and bn.num_batches_tracked.item() == 0
    assert torch.equal(torch.rand(3), first)  # the RNG is back where the step began
