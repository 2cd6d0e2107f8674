"""The launcher and the command line of data-parallel training, a killed rank, and the errors
raised before any collective could hang (attnkit.train.distributed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attnkit
from attnkit.cli import main
from attnkit.data.base import Batch
from attnkit.train import distributed as D
from attnkit.train import load_checkpoint, resume_run

from . import ddp_worker as W

SRC = str(Path(attnkit.__file__).parents[1])
TINY = ["--hidden-dim", "16", "--embed-dim", "8", "--batch-size", "8", "--task-option", "train=40",
        "--task-option", "valid=8", "--task-option", "test=8", "--threads", "1"]


# -- rows of a batch -------------------------------------------------------------------------------
def test_shard_rows_gives_contiguous_slices_whose_union_is_the_batch():
    b = Batch(src=torch.arange(10).view(5, 2), src_lengths=torch.tensor([2, 2, 1, 2, 1]),
              tgt_in=torch.arange(15).view(5, 3), tgt_out=torch.arange(15).view(5, 3),
              tgt_lengths=torch.tensor([3, 3, 2, 1, 3]), index=torch.tensor([4, 0, 3, 1, 2]))
    (p0, n0), (p1, n1) = D.shard_rows(b, 0, 2), D.shard_rows(b, 1, 2)
    assert (n0, n1) == (2, 3)  # [5*0//2, 5*1//2) = [0, 2), [2, 5)
    assert p0.index.tolist() == [4, 0] and p1.index.tolist() == [3, 1, 2]
    assert p1.src.tolist() == [[4, 5], [6, 7], [8, 9]] and p1.tgt_lengths.tolist() == [2, 1, 3]
    # 3 rows on 4 ranks: [0, 0) [0, 1) [1, 2) [2, 3): rank 0 runs row 0 with weight 0
    got = [D.shard_rows(b.src[:3], r, 4) for r in range(4)]
    assert [n for _, n in got] == [0, 1, 1, 1]
    assert [p.tolist() for p, _ in got] == [[[0, 1]], [[0, 1]], [[2, 3]], [[4, 5]]]
    with pytest.raises(TypeError, match="cannot be split across processes"):
        D.batch_rows(object())


# -- errors before any collective ----------------------------------------------------------------------
def test_too_many_processes_and_a_missing_group_are_clear_errors(monkeypatch):
    cores = D.usable_cores()
    with pytest.raises(D.DistributedError, match=rf"nproc={cores + 1} processes on {cores} CPU core.*nproc={cores}"):
        D.check_nproc(cores + 1)
    with pytest.raises(D.DistributedError, match="nproc must be a positive int"):
        D.check_nproc(0)
    with pytest.raises(D.DistributedError, match="never initialised.*setup\\(\\).*torchrun"):
        D.barrier()
    with pytest.raises(D.DistributedError, match="never initialised"):
        D.all_reduce_metrics({"loss": 1.0}, 3.0)
    with pytest.raises(D.DistributedError, match="batch_size=1 is the global batch.*batch_size=2 or more"):
        D.DistContext(world=2).check_batch_size(1)
    assert D.torchrun_env({}) is None and D.current().world == 1


def test_half_a_torchrun_environment_is_refused_naming_what_is_missing(monkeypatch):
    with pytest.raises(D.DistributedError, match="RANK, WORLD_SIZE set but LOCAL_RANK, MASTER_ADDR, MASTER_PORT "
                                                 "missing; start the job with torchrun"):
        D.torchrun_env({"RANK": "0", "WORLD_SIZE": "2"})
    env = dict(RANK="2", WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR="x", MASTER_PORT="1")
    with pytest.raises(D.DistributedError, match="RANK=2 WORLD_SIZE=2: need 0 <= RANK < WORLD_SIZE"):
        D.torchrun_env(env)
    with pytest.raises(D.DistributedError, match="MASTER_PORT='p' is not an integer"):
        D.torchrun_env({**env, "RANK": "0", "MASTER_PORT": "p"})
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(D.DistributedError, match="missing"):  # train() asks before touching the network
        D.current()


def test_cli_refuses_nproc_beyond_the_cores_and_nproc_under_torchrun(capsys, monkeypatch):
    n = D.usable_cores() + 1
    assert main(["train", "reverse", "--nproc", str(n)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--nproc {n} processes on" in err[0] and "use --nproc" in err[0]
    for k, v in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="1").items():
        monkeypatch.setenv(k, v)
    assert main(["train", "reverse", "--nproc", "1"]) == 2
    assert "under torchrun drop it" in capsys.readouterr().err


def test_fsdp_on_one_process_or_on_the_rnn_is_refused_before_anything_starts(capsys, tmp_path):
    assert main(["train", "reverse", "--fsdp", "--steps", "1", "--out", str(tmp_path / "a"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "FSDP shards a model across processes, and this is one" in err[0], err
    assert not (tmp_path / "a").exists()  # refused before the run directory was made
    nproc = str(min(2, D.usable_cores()))
    assert main(["train", "reverse", "--nproc", nproc, "--fsdp", "--out", str(tmp_path / "b"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fsdp shards the layers of a Transformer model" in err[0] and "'seq2seq'" in err[0]


# -- real launches ------------------------------------------------------------------------------------
def _env() -> dict:
    return {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}


@pytest.mark.skipif(D.usable_cores() < 2, reason="2 processes need 2 CPU cores")
def test_cli_nproc_2_trains_end_to_end_and_torchrun_resumes_it(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "attnkit", "train", "reverse", "--nproc", "2", "--steps", "4", "--eval-every", "2",
           "--out", str(out), "--json", *TINY]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, p.stdout  # rank 0 alone prints
    result = json.loads(lines[0])
    assert result["steps"] == 4 and result["run_dir"] == str(out)
    events = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    # rank 0 alone writes: one training line per step (the global batch's loss), one per validation
    assert [e["event"] for e in events] == ["train", "train", "valid", "train", "train", "valid", "done"]
    assert [e["step"] for e in events if e["event"] == "train"] == [1, 2, 3, 4]
    _, meta = load_checkpoint(out, "last")
    assert meta["step"] == 4 and meta["train"]["options"]["batch_size"] == 8  # the global batch
    # torchrun itself, as the interface: the same command line, the run continued on 2 ranks
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    p = subprocess.run([*torchrun, "-m", "attnkit", "train", "--resume", str(out), "--steps", "6", "--json"],
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(p.stdout.strip().splitlines()) == 1 and json.loads(p.stdout)["steps"] == 6
    assert load_checkpoint(out, "last")[1]["step"] == 6


@pytest.mark.skipif(D.usable_cores() < 2, reason="2 processes need 2 CPU cores")
def test_a_killed_rank_ends_the_job_with_a_clear_message_and_a_usable_checkpoint(tmp_path, one_thread, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv("PYTHONPATH", SRC)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with pytest.raises(D.RankFailed) as info:  # rank 1 dies by SIGKILL after step 6; checkpoints every 4 steps
        D.launch(2, [W.__file__, str(out), "12", "1", "6"], run_dir=out)
    msg = str(info.value)
    assert "rank 1" in msg and "SIGKILL" in msg, msg
    assert f"{out}/last.json (step 4) is intact" in msg and f"attnkit train --resume {out}" in msg, msg
    tensors, meta = load_checkpoint(out, "last")  # hashes and every check pass
    assert meta["step"] == 4
    result = resume_run(out, steps=8, progress=False)  # and it continues, in one process
    assert result["steps"] == 8


def test_the_failure_line_names_the_root_cause_and_what_is_left(tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    def failed(**codes: int) -> ChildFailedError:  # rank -> exit code, as torchrun's agent reports them
        return ChildFailedError("attnkit", {int(r[1:]): ProcessFailure(local_rank=int(r[1:]), pid=100 + int(r[1:]),
                                                                    exitcode=c, error_file="<none>")
                                           for r, c in codes.items()})

    # the agent SIGTERMs the survivors once rank 1 died: rank 1 is the cause
    line = D.describe_failure(failed(r0=-15, r1=-9), tmp_path)
    assert line.startswith("rank 1 (pid 101) was killed by SIGKILL; the job was stopped"), line
    assert line.endswith(f"{tmp_path} holds no checkpoint yet (nothing to resume: start the run again)")
    (tmp_path / "last.json").write_text(json.dumps({"step": 12}))
    line = D.describe_failure(failed(r0=1, r1=-15), tmp_path, "attnkit train --resume R --nproc 2")
    assert line == (f"rank 0 (pid 100) exited with status 1; the job was stopped; the last checkpoint "
                    f"{tmp_path}/last.json (step 12) is intact: continue with `attnkit train --resume R --nproc 2`")
