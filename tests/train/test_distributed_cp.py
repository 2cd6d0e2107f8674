"""Context-parallel training (attnkit.train.context_parallel) on CPU with gloo.

Every rank of a group of C holds half (C = 2) or a quarter (C = 4) of every sequence of its rows,
the loss is the mean over every token of the global batch and the gradients are all-reduced over
the whole world (DDP, or FSDP2's reduce-scatter), so cp = 2 on 2 ranks (with DDP or FSDP2),
dp = 2 x cp = 2 and cp = 4 on 4 ranks give the losses and, after 8 steps, the weights of one
process on whole sequences (float32, within 1e-5); a checkpoint they write resumes on one process.
The bad inputs are refused before any collective: the library tests below run them with no
process group at all.
"""

from __future__ import annotations

import json

import pytest

from attnkit.cli import main
from attnkit.train import distributed as D
from attnkit.train import load_checkpoint, train
from attnkit.train.context_parallel import check_context_parallel, enable_context_parallel, supporting_models

from . import cp_worker as CP
from . import ddp_worker as W

TOL = 1e-5
GPT = {"model": "gpt"}
SHAKESPEARE = ["--model", "gpt", "--hidden-dim", "16", "--steps", "1", "--batch-size", "4"]
two_cores = pytest.mark.skipif(D.usable_cores() < 2, reason="2 processes need 2 CPU cores")


def _close(a: dict, b: dict, tol: float = TOL) -> None:
    assert sorted(a) == sorted(b)
    worst = max((float((a[k].double() - b[k].double()).abs().max()), k) for k in a)
    print(f"largest difference {worst[0]:.3g} ({worst[1]}) over {len(a)} tensors")  # shown with pytest -s
    assert worst[0] <= tol, f"largest difference {worst[0]:.3g} in {worst[1]}"


def _losses(out) -> list[float]:
    events = map(json.loads, (out / "history.jsonl").read_text().splitlines())
    return [e["loss"] for e in events if e["event"] == "train"]


def _state(out) -> dict:
    return load_checkpoint(out, "last")[1]["train"]["state"]


def _same_run(a, b) -> None:
    """Runs ``a`` and ``b`` trained on the same batches to the same weights and Adam moments."""
    for k in ("step", "epoch", "offset", "train_tokens"):
        assert _state(a)[k] == _state(b)[k], k
    assert _losses(a) == pytest.approx(_losses(b), abs=TOL)
    _close(W.last_weights(a), W.last_weights(b))
    optim = [{k: v for k, v in load_checkpoint(x, "last")[0].items() if k.startswith("optim/")} for x in (a, b)]
    _close(*optim)


@two_cores
def test_cp2_with_ddp_or_fsdp_trains_as_one_process_and_its_checkpoint_resumes_on_one(tmp_path, one_thread):
    cp2, cut, fsdp = tmp_path / "cp2", tmp_path / "cut", tmp_path / "fsdp"
    CP.run_ranks(2, [{"kind": "train", "out": str(cp2), "steps": 8, "context_parallel": 2, **GPT},
                     {"kind": "train", "out": str(cut), "steps": 4, "decay_steps": 8, "context_parallel": 2, **GPT},
                     {"kind": "train", "out": str(fsdp), "steps": 8, "context_parallel": 2, "fsdp": True, **GPT}])
    one = tmp_path / "one"
    W.run_job({"kind": "train", "out": str(one), "steps": 8, **GPT})
    _same_run(cp2, one)
    _same_run(fsdp, one)  # FSDP2 over both ranks, the ring within them: the same weights and moments
    events = [json.loads(x) for x in (cp2 / "history.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "done" for e in events) == 1  # rank 0 alone wrote the run
    # 16 rows x 16 positions per step, whatever the split: the tokens of the global batch
    assert _state(cp2)["train_tokens"] == 8 * 16 * 16
    W.run_job({"kind": "resume", "out": str(cut), "steps": 8})  # written at cp = 2, continued at cp = 1
    _same_run(cut, one)


@two_cores
def test_dp2_x_cp2_and_cp4_on_four_ranks_train_as_one_process(tmp_path, one_thread):
    runs = {c: tmp_path / f"cp{c}" for c in (2, 4)}  # 4 ranks: 2 data shards x 2, then 1 x 4
    CP.run_ranks(4, [{"kind": "train", "out": str(runs[c]), "steps": 8, "context_parallel": c, **GPT} for c in runs])
    one = tmp_path / "one"
    W.run_job({"kind": "train", "out": str(one), "steps": 8, **GPT})
    for c in runs:
        _same_run(runs[c], one)


# -- bad input, refused before any collective ------------------------------------------------------
def test_library_refusals_name_the_fix_before_any_process_group_exists():
    task, gpt = W.build("gpt")  # block size 16
    assert supporting_models() == ["gpt"]
    with pytest.raises(D.DistributedError, match=r"'seq2seq' model has no context-parallel forward; models that "
                                                 r"have one: gpt"):
        check_context_parallel(W.build("seq2seq")[1], W.build("seq2seq")[0], 2)
    with pytest.raises(D.DistributedError, match=r"sequences of 16 positions do not cut into the zigzag layout's 6 "
                                                 r"equal chunks .* context_parallel=1, 2, 4 or 8 .*block_size=18"):
        check_context_parallel(gpt, task, 3)
    with pytest.raises(D.DistributedError, match="context_parallel must be a positive int"):
        check_context_parallel(gpt, task, 0)
    assert check_context_parallel(W.build("seq2seq")[1], None, 1) == 1  # C = 1 asks nothing of the model
    # the world checks need no process group either: a context that says 6 ranks, and none exists
    with pytest.raises(D.DistributedError, match=r"context_parallel=4 does not divide the 6 processes .* "
                                                 r"context_parallel=1, 2, 3 or 6 or nproc=8"):
        enable_context_parallel(D.DistContext(rank=0, world=6), 4, model=gpt, task=task)
    with pytest.raises(D.DistributedError, match=r"this is one process; start the run with attnkit train --nproc N "
                                                 r"--context-parallel C .* torchrun"):
        train(task, gpt, steps=1, context_parallel=2, progress=False)


def test_cli_context_parallel_on_one_process_names_nproc_and_torchrun(capsys, tmp_path):
    out = tmp_path / "a"
    assert main(["train", "shakespeare", "--context-parallel", "2", "--out", str(out), *SHAKESPEARE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--context-parallel 2 splits every sequence across 2 processes, and this is one" in err[0]
    assert "attnkit train --nproc N --context-parallel C" in err[0] and "torchrun" in err[0], err
    assert not out.exists()  # refused before the run directory was made


@two_cores
def test_cli_refuses_before_launching(capsys, tmp_path):
    """Each refusal comes from the launching process, once, before any rank starts."""
    def refused(*flags: str) -> str:
        assert main(["train", *flags, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert not (tmp_path / "x").exists()
        return err[0]

    msg = refused("shakespeare", "--nproc", "2", "--context-parallel", "3", *SHAKESPEARE)
    assert "--context-parallel 3 does not divide the 2 processes" in msg and "--context-parallel 1 or 2" in msg, msg
    msg = refused("reverse", "--nproc", "2", "--context-parallel", "2")
    assert "'seq2seq' model has no context-parallel forward; models that have one: gpt" in msg
    msg = refused("shakespeare", "--task-option", "block_size=18", "--nproc", "2", "--context-parallel", "2",
                  *SHAKESPEARE)
    assert "sequences of 18 positions do not cut into the zigzag layout's 4 equal chunks" in msg
    assert "--context-parallel 1, 3 or 9" in msg and "block_size=20" in msg
    n = D.usable_cores() + 1
    msg = refused("shakespeare", "--nproc", str(n), "--context-parallel", "2", *SHAKESPEARE)
    assert f"--nproc {n} processes on" in msg and "use --nproc" in msg

