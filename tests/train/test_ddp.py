"""Data-parallel training (attnkit.train.distributed) on CPU with gloo, 2 ranks started by torch.multiprocessing.

The loss of a step is the mean over the GLOBAL batch (rank r's mean weighted by its share of the
targets), so 2 ranks x 8 rows are 1 rank x 16 rows up to float rounding, including the epoch's
last batch of 1 row (rank 1 then trains one row with weight 0). Positions are counted in global
batches, so a checkpoint written by 2 ranks continues in 1 process exactly where it stopped.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.multiprocessing as mp

from attnkit.train import load_checkpoint

from . import ddp_worker as W


def _close(a: dict, b: dict, tol: float = 1e-5) -> None:
    assert sorted(a) == sorted(b)
    worst = max((float((a[k].double() - b[k].double()).abs().max()), k) for k in a)
    print(f"largest difference {worst[0]:.3g} ({worst[1]}) over {len(a)} tensors")  # shown with pytest -s
    assert worst[0] <= tol, f"largest difference {worst[0]:.3g} in {worst[1]}"


def _state(out) -> dict:
    return load_checkpoint(out, "last")[1]["train"]["state"]


def test_two_ranks_of_b_rows_give_one_rank_of_2b_after_20_steps(tmp_path, one_thread):
    models = ("seq2seq", "gpt")  # the RNN on padded batches, the GPT on full windows; one group runs both
    W.run_ranks(2, [{"kind": "train", "out": str(tmp_path / f"ddp-{m}"), "steps": 20, "model": m} for m in models])
    # 97 pairs in batches of 16: the 7th batch of a seq2seq epoch has 1 row, so rank 1 trains none (weight 0)
    assert len(list(W.build()[0].batches("train", 16))) == 7
    for m in models:
        ddp, one = tmp_path / f"ddp-{m}", tmp_path / f"one-{m}"
        W.run_job({"kind": "train", "out": str(one), "steps": 20, "model": m})
        for k in ("step", "epoch", "offset", "train_tokens"):  # the same batches, counted in the same units
            assert _state(ddp)[k] == _state(one)[k], (m, k)
        _close(W.last_weights(ddp), W.last_weights(one))
        # rank 0 alone wrote the history: one line per validation, not one per rank
        events = [json.loads(x) for x in (ddp / "history.jsonl").read_text().splitlines()]
        assert [e["step"] for e in events if e["event"] == "valid"] == [5, 10, 15, 20]
        assert sum(e["event"] == "done" for e in events) == 1


def test_checkpoint_of_two_ranks_resumes_on_one_and_exact_resume_holds(tmp_path, one_thread):
    """Also in this group: a --minutes budget ends every rank at one step, and rank 0 refusing a run
    directory ends rank 1 too (an error, never a hang)."""
    d = {k: str(tmp_path / k) for k in ("cut", "whole2", "cut2")}
    jobs = [
        {"kind": "train", "out": d["cut"], "steps": 10, "decay_steps": 20},  # 2 ranks to step 10, then 1
        {"kind": "train", "out": d["whole2"], "steps": 20},  # 2 ranks, never stopped
        {"kind": "train", "out": d["cut2"], "steps": 10, "decay_steps": 20},  # 2 ranks, stopped at 10 ...
        {"kind": "resume", "out": d["cut2"], "steps": 20},  # ... and resumed by 2 ranks
        {"kind": "train", "out": d["whole2"] + "-drop", "steps": 12, "model": "dropout"},  # dropout 0.3:
        {"kind": "train", "out": d["cut2"] + "-drop", "steps": 6, "decay_steps": 12, "model": "dropout"},
        {"kind": "resume", "out": d["cut2"] + "-drop", "steps": 12},  # each rank's draws from (seed, step, rank)
    ]
    timed = str(tmp_path / "timed")
    jobs += [{"kind": "train", "out": timed, "steps": None, "minutes": 0.05},  # the ranks agree on the clock
             {"kind": "train", "out": timed, "steps": 2}]  # rank 0 refuses the directory: rank 1 must not hang
    with pytest.raises(mp.ProcessRaisedException, match="already holds a run"):
        W.run_ranks(2, jobs)
    events = [json.loads(x) for x in (tmp_path / "timed" / "history.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "done" and events[-1]["steps"] == _state(timed)["step"] >= 1
    # exact resume at the same world size: bit for bit, with dropout too
    for x in ("", "-drop"):
        a, b = load_checkpoint(d["whole2"] + x, "last")[0], load_checkpoint(d["cut2"] + x, "last")[0]
        assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a if not k.startswith("rng/")), x
    # world size 2 -> 1: continues as a one-process run that never stopped would
    W.run_job({"kind": "resume", "out": d["cut"], "steps": 20})
    W.run_job({"kind": "train", "out": str(tmp_path / "whole1"), "steps": 20})
    cut, whole = _state(d["cut"]), _state(tmp_path / "whole1")
    for k in ("step", "epoch", "offset", "train_tokens", "best_step"):
        assert cut[k] == whole[k], k
    _close(W.last_weights(d["cut"]), W.last_weights(tmp_path / "whole1"))
    optim_cut = {k: v for k, v in load_checkpoint(d["cut"], "last")[0].items() if k.startswith("optim/")}
    optim_whole = {k: v for k, v in load_checkpoint(tmp_path / "whole1", "last")[0].items() if k.startswith("optim/")}
    _close(optim_cut, optim_whole)


def test_fsdp2_trains_a_gpt_as_one_process_resumes_from_its_shards_and_exports_one_checkpoint(tmp_path, one_thread):
    from attnkit.train import load_run

    d = {k: str(tmp_path / k) for k in ("whole", "cut")}
    g = {"model": "gpt", "fsdp": True}
    W.run_ranks(2, [
        {"kind": "train", "out": d["whole"], "steps": 20, **g},
        {"kind": "train", "out": d["cut"], "steps": 10, "decay_steps": 20, **g},
        {"kind": "resume", "out": d["cut"], "steps": 20, "fsdp": True},  # from the DCP shards of step 10
        {"kind": "load_dcp", "out": d["whole"], "steps": 20, "model": "gpt"},  # its DCP shards
    ])
    a, b = load_checkpoint(d["whole"], "last")[0], load_checkpoint(d["cut"], "last")[0]
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a if not k.startswith("rng/"))
    assert json.loads((tmp_path / "cut" / "last.dcp" / "attnkit.json").read_text()) == {"step": 20}
    # the shards every rank wrote with torch.distributed.checkpoint hold the exported state, bit for bit
    from safetensors.torch import load_file

    loaded = load_file(d["whole"] + ".loaded.safetensors")
    assert sorted(loaded) == sorted(k for k in a if not k.startswith("rng/"))
    assert all(torch.equal(loaded[k], a[k]) for k in loaded)
    W.run_job({"kind": "train", "out": str(tmp_path / "one"), "steps": 20, "model": "gpt"})
    _close(W.last_weights(d["whole"]), W.last_weights(tmp_path / "one"))
    optim = [{k: v for k, v in load_checkpoint(x, "last")[0].items() if k.startswith("optim/")}
             for x in (d["whole"], tmp_path / "one")]
    _close(*optim)  # the gathered Adam moments, in the one-process checkpoint's index form
    task, model, _ = load_run(d["whole"])  # the exported checkpoint is an ordinary one: evaluate reads it
    best = load_checkpoint(d["whole"], "best")[1]["metrics"]["loss"]
    assert task.evaluate(model, "valid")["loss"] == pytest.approx(best)

