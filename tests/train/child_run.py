"""A training in its own process, for the tests that interrupt, kill or race real processes.

    python child_run.py OUT STEPS ATTENTION MODE PAUSE_AT [EXTRA_JSON]

MODE ``run``: train STEPS steps into OUT (``resume``: continue OUT to STEPS).
MODE ``hold``: after step PAUSE_AT, write ``OUT.ready`` and wait (at most 60 s) for ``OUT.go``.
MODE ``forward``: the same, but inside the forward of step PAUSE_AT, after the model's
REINFORCE baseline (``--attention hard``) or its encoder (any other attention) has run,
so a SIGINT sent on ``OUT.ready`` lands in the middle of that step.
A KeyboardInterrupt exits with status 130. One thread, so runs in different processes match bit for bit.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import torch

import attnkit
from attnkit.data import get_task
from attnkit.models import build_model, model_config_for_task
from attnkit.train import load_checkpoint, resume_run, train

TASK = dict(train=96, valid=8, test=8, min_len=2, max_len=4)
RUN = dict(batch_size=16, eval_every=4, eval_examples=8, warmup=2, progress=False)


def build(attention: str):
    """(task, model): the small reverse task and seq2seq model every reliability test trains (seed 7)."""
    task = get_task("reverse", **TASK)
    torch.manual_seed(7)
    return task, build_model(
        model_config_for_task("seq2seq", task, hidden_dim=16, embed_dim=8, dropout=0.2, attention=attention)
    )


def assert_same_tensors(a, b) -> None:
    """The ``last`` checkpoints of run directories ``a`` and ``b`` hold the same tensors, bit for bit."""
    ta, _ = load_checkpoint(a, "last")
    tb, _ = load_checkpoint(b, "last")
    assert sorted(ta) == sorted(tb)
    differ = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not differ, f"{len(differ)} of {len(ta)} tensors differ: {differ[:5]}"


def main(out: str, steps: int, attention: str, mode: str, pause_at: int, extra: dict) -> int:
    torch.set_num_threads(1)
    # a shell's background job (``make test &``) starts with SIGINT ignored, and Python then keeps it ignored:
    # the Ctrl-C these tests send would be lost. Restore Python's own handler (KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ready, go = pathlib.Path(out + ".ready"), pathlib.Path(out + ".go")

    def wait() -> None:
        ready.write_text("ready")
        t = time.monotonic()
        while not go.exists() and time.monotonic() - t < 60:
            time.sleep(0.01)

    if mode == "resume":
        resume_run(out, steps=steps, progress=False, **extra)
        return 0
    task, model = build(attention)
    calls = [0]

    def hook(module, args, output) -> None:  # after the module ran inside a training forward
        if module.training:
            calls[0] += 1
            if mode == "forward" and calls[0] == pause_at:
                wait()

    (model.baseline if attention == "hard" else model.encoder).register_forward_hook(hook)

    def callback(step: int, metrics: dict) -> None:
        if mode == "hold" and step == pause_at:
            wait()

    train(task, model, steps=steps, seed=7, out_dir=out, callback=callback, **{**RUN, **extra})
    return 0


# -- the parent's side -------------------------------------------------------------------------
def spawn(
    out, steps: int, attention: str = "bahdanau", mode: str = "run", pause_at: int = 0, **extra
) -> subprocess.Popen:
    """Start ``main`` in a fresh Python process (stdout/stderr captured)."""
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(attnkit.__file__).parents[1])}
    args = [sys.executable, __file__, str(out), str(steps), attention, mode, str(pause_at), json.dumps(extra)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_ready(out, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the child paused at its point (``OUT.ready``); fails if it died first or took too long."""
    ready, t = pathlib.Path(str(out) + ".ready"), time.monotonic()
    while not ready.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the child exited {proc.returncode} before its pause: {proc.stderr.read()[-2000:]}")
        if time.monotonic() - t > timeout:
            proc.kill()
            raise AssertionError(f"the child did not reach its pause in {timeout} s")
        time.sleep(0.02)


def release(out) -> None:
    pathlib.Path(str(out) + ".go").write_text("go")


def finish(proc: subprocess.Popen, timeout: float = 180) -> int:
    """The child's exit status (killed after ``timeout`` s)."""
    try:
        proc.out_text, proc.err_text = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"the child ran past {timeout} s") from None
    return proc.returncode


def run(out, steps: int, attention: str = "bahdanau", mode: str = "run", **extra) -> None:
    proc = spawn(out, steps, attention, mode, **extra)
    assert finish(proc) == 0, proc.err_text[-3000:]


if __name__ == "__main__":
    a = sys.argv[1:]
    try:
        sys.exit(main(a[0], int(a[1]), a[2], a[3], int(a[4]), json.loads(a[5]) if len(a) > 5 else {}))
    except KeyboardInterrupt:
        sys.exit(130)
