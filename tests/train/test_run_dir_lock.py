"""Run directories: one training at a time (a real second process is refused), a run is never
replaced unasked, and a lock left by a killed process is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import attnkit
from attnkit.cli import main
from attnkit.data import get_task
from attnkit.models import build_model, model_config_for_task
from attnkit.train import load_checkpoint, resume_run, train
from attnkit.train.lock import RunDirectoryError, RunLock, claim_run_dir
from tests.train import child_run

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def small():
    task = get_task("reverse", **child_run.TASK)
    torch.manual_seed(7)
    return task, build_model(model_config_for_task("seq2seq", task, hidden_dim=16, embed_dim=8))


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_a_second_training_is_refused_while_the_first_runs_and_the_first_run_stays_intact(tmp_path, capsys):
    d = tmp_path / "run"
    first = child_run.spawn(d, 8, mode="hold", pause_at=5)  # holds the lock, paused after step 5
    try:
        child_run.wait_ready(d, first)
        task, model = small()
        for kw in ({}, {"force": True}, {"resume": True}):  # a live lock is never broken, whatever the flags
            with pytest.raises(RunDirectoryError, match=rf"in use by another training \(pid {first.pid} ") as e:
                train(task, model, steps=2, out_dir=d, progress=False, **kw)
            assert e.value.reason == "busy"
        # the command line, in a second real process: one line on stderr, one JSON object on stdout, exit 2
        env = {**os.environ, "PYTHONPATH": str(Path(attnkit.__file__).parents[1])}
        cli = subprocess.run(
            [sys.executable, "-m", "attnkit", "train", "reverse", "--steps", "2", "--out", str(d), "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 2, cli.stderr
        assert "Traceback" not in cli.stderr and len(cli.stderr.strip().splitlines()) == 1
        assert (
            f"in use by another training (pid {first.pid}" in json.loads(cli.stdout.strip().splitlines()[-1])["error"]
        )
        # `attnkit train --resume` is refused before it reads the run (the lock is taken first)
        assert main(["train", "--resume", str(d), "--steps", "9"]) == 2
        assert f"in use by another training (pid {first.pid}" in capsys.readouterr().err
    finally:
        child_run.release(d)
        assert child_run.finish(first) == 0, first.err_text
    # the first run is whole: both records from it, its history alone, and the lock free again
    last, last_meta = load_checkpoint(d, "last")
    _, best_meta = load_checkpoint(d, "best")
    assert last_meta["step"] == 8 and best_meta["step"] in (4, 8)
    ev = events(d)
    assert [e["step"] for e in ev if e["event"] == "valid"] == [4, 8] and sum(e["event"] == "done" for e in ev) == 1
    assert (d / ".lock").read_text() == ""  # released: no holder recorded
    claim_run_dir(d, resume=True).release()


def test_the_lock_of_a_killed_training_is_stale_and_taken_over(tmp_path):
    d = tmp_path / "run"
    victim = child_run.spawn(d, 12, mode="hold", pause_at=5)  # last.json saved at step 4
    child_run.wait_ready(d, victim)
    victim.send_signal(signal.SIGKILL)
    assert child_run.finish(victim) == -signal.SIGKILL
    assert json.loads((d / ".lock").read_text())["pid"] == victim.pid  # the dead holder's record is left
    res = resume_run(d, progress=False)  # the kernel dropped the lock: the resume takes it
    assert res["steps"] == 12
    stale = [e for e in events(d) if e["event"] == "stale_lock"]
    assert len(stale) == 1 and stale[0]["holder"]["pid"] == victim.pid


def test_a_directory_holding_a_run_is_refused_without_resume_or_force(tmp_path):
    task, model = small()
    train(task, model, steps=4, out_dir=tmp_path, batch_size=16, eval_every=2, eval_examples=8, progress=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    task, model = small()
    with pytest.raises(
        RunDirectoryError, match=r"already holds a run \(last.json, best.json, history.jsonl, metrics.json\)"
    ) as e:
        train(task, model, steps=2, out_dir=tmp_path, progress=False)
    assert e.value.reason == "holds_run"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # untouched
    # force: the old run's files are deleted, the new run is alone in the directory
    res = train(
        task, model, steps=2, out_dir=tmp_path, force=True, batch_size=16, eval_every=2, eval_examples=8, progress=False
    )
    assert res["steps"] == 2
    assert [e["step"] for e in events(tmp_path) if e["event"] == "valid"] == [2]
    assert len(list(tmp_path.glob("last-*.safetensors"))) == 1 and load_checkpoint(tmp_path, "last")[1]["step"] == 2


def test_an_out_dir_that_is_a_file_and_a_missing_resume_dir(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    task, model = small()
    for out in (f, f / "sub"):
        with pytest.raises(RunDirectoryError, match="is a file|a parent is a file") as e:
            train(task, model, steps=2, out_dir=out, progress=False)
        assert e.value.reason == "not_a_directory"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(task, model, steps=2, out_dir=tmp_path / "nope", resume=True, progress=False)
    assert not (tmp_path / "nope").exists()  # a mistyped --resume creates nothing


def test_the_lock_is_released_when_the_run_raises(tmp_path):
    task, model = small()

    def boom(step, metrics):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train(task, model, steps=4, out_dir=tmp_path, callback=boom, progress=False)
    with RunLock(tmp_path) as lock:  # free again
        assert lock.stale is None  # a clean release leaves no holder record


def test_the_lock_is_reentrant_in_its_thread_and_exclusive_across_threads(tmp_path):
    seen = []
    with RunLock(tmp_path):
        with RunLock(tmp_path):  # the same thread (the CLI around train()) may take it again
            pass

        def other():
            try:
                RunLock(tmp_path).acquire()
            except RunDirectoryError as e:
                seen.append(str(e))

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert len(seen) == 1 and "another thread of this process" in seen[0]
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()  # still held after the inner release
    assert (tmp_path / ".lock").read_text() == ""
