"""Checkpoints (atomic, verified, pickle-free) and exact resume of the training loop."""

from __future__ import annotations

import errno
import json
import os
import pickle

import pytest
import torch

from attnkit.data import get_task
from attnkit.models import build_model, model_config_for_task
from attnkit.train import (
    CheckpointError,
    load_checkpoint,
    load_run,
    lr_at,
    resume_run,
    save_checkpoint,
    train,
    write_atomic,
)
from attnkit.train.checkpoint import split_prefix


def small_task():
    return get_task("reverse", train=96, valid=8, test=8, min_len=2, max_len=4)


def small_model(task, seed=7, **kw):
    torch.manual_seed(seed)  # the initialisation is part of the run
    cfg = model_config_for_task("seq2seq", task, hidden_dim=16, embed_dim=8, dropout=0.2, **kw)
    return build_model(cfg)


def run_kw(**kw):
    return dict(batch_size=16, eval_every=4, eval_examples=8, warmup=2, progress=False, **kw)


# -- atomic writes ---------------------------------------------------------------------------
def test_write_atomic_replaces_whole_files(tmp_path):
    p = tmp_path / "x.bin"
    write_atomic(p, b"old")
    write_atomic(p, b"new contents")
    assert p.read_bytes() == b"new contents"
    assert [f.name for f in tmp_path.iterdir()] == ["x.bin"]


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, "last", {"model/w": torch.arange(3.0)}, {"step": 1, "config": {"model": "x"}})
    before = sorted(f.name for f in tmp_path.iterdir())

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="disk is full.*previous checkpoint is intact"):
        save_checkpoint(tmp_path, "last", {"model/w": torch.arange(5.0)}, {"step": 2, "config": {"model": "x"}})
    monkeypatch.undo()
    assert sorted(f.name for f in tmp_path.iterdir()) == before  # no temp file, no new weights left behind
    tensors, meta = load_checkpoint(tmp_path, "last")
    assert meta["step"] == 1 and torch.equal(tensors["model/w"], torch.arange(3.0))


def test_a_failed_json_commit_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, "best", {"model/w": torch.ones(2)}, {"step": 1, "config": {}})
    import attnkit.train.checkpoint as ck

    real = ck.write_atomic

    def fail_on_json(path, data):
        if str(path).endswith(".json"):
            raise OSError(errno.ENOSPC, "full")
        real(path, data)

    monkeypatch.setattr(ck, "write_atomic", fail_on_json)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, "best", {"model/w": torch.zeros(2)}, {"step": 2, "config": {}})
    monkeypatch.undo()
    tensors, meta = load_checkpoint(tmp_path, "best")
    assert meta["step"] == 1 and torch.equal(tensors["model/w"], torch.ones(2))
    assert len(list(tmp_path.glob("best-*.safetensors"))) == 1


# -- broken checkpoints give clear errors ----------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    save_checkpoint(tmp_path, "best", {"model/w": torch.arange(4.0)}, {"step": 3, "config": {"model": "seq2seq"}})
    return tmp_path


def test_missing_run_and_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        load_checkpoint(tmp_path)


def test_tampered_weights_are_refused(saved):
    w = next(saved.glob("best-*.safetensors"))
    data = bytearray(w.read_bytes())
    data[-1] ^= 0x01  # flip one bit of the tensor data
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        load_checkpoint(saved)


def test_truncated_and_missing_weights_are_refused(saved):
    w = next(saved.glob("best-*.safetensors"))
    w.write_bytes(w.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(saved)
    w.unlink()
    with pytest.raises(CheckpointError, match="is missing"):
        load_checkpoint(saved)


def test_damaged_or_foreign_json_is_refused(saved):
    rec = saved / "best.json"
    meta = json.loads(rec.read_text())
    rec.write_text(rec.read_text()[:30])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(saved)
    rec.write_text(json.dumps({**meta, "format": "other/1"}))
    with pytest.raises(CheckpointError, match="not an attnkit checkpoint"):
        load_checkpoint(saved)
    rec.write_text(json.dumps({**meta, "weights": "../../etc/passwd"}))
    with pytest.raises(CheckpointError, match="outside the run directory"):
        load_checkpoint(saved)


# -- the loop --------------------------------------------------------------------------------
def test_lr_schedule_by_hand():
    assert lr_at(0, lr=1.0, warmup=4, steps=None, min_lr_ratio=0.1) == 0.25
    assert lr_at(3, lr=1.0, warmup=4, steps=None, min_lr_ratio=0.1) == 1.0
    assert lr_at(10, lr=1.0, warmup=4, steps=None, min_lr_ratio=0.1) == 1.0
    assert lr_at(4, lr=1.0, warmup=4, steps=14, min_lr_ratio=0.1) == 1.0
    assert lr_at(9, lr=1.0, warmup=4, steps=14, min_lr_ratio=0.1) == pytest.approx(0.55)  # half way down the cosine
    assert lr_at(14, lr=1.0, warmup=4, steps=14, min_lr_ratio=0.1) == pytest.approx(0.1)


def test_resume_after_interrupt_is_identical_to_one_run(tmp_path):
    """Stop at step 6 (Ctrl-C inside a step), resume to 12: same weights and metrics as 12 in one go."""
    task = small_task()
    ref = train(task, small_model(task), steps=12, seed=7, out_dir=tmp_path / "ref", **run_kw())
    ref_w, _ = load_checkpoint(tmp_path / "ref", "last")

    def interrupt(step, metrics):
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(task, small_model(task), steps=12, seed=7, out_dir=tmp_path / "cut", callback=interrupt, **run_kw())
    _, meta = load_checkpoint(tmp_path / "cut", "last")
    assert meta["step"] == 6
    res = resume_run(tmp_path / "cut", progress=False)
    got_w, _ = load_checkpoint(tmp_path / "cut", "last")
    for k in ref_w:
        if k.startswith(("model/", "optim/")):
            assert torch.equal(ref_w[k], got_w[k]), k
    for k in ("exact_match", "token_error_rate", "valid_exact_match", "steps"):
        assert res[k] == ref[k], k
    events = [json.loads(line) for line in (tmp_path / "ref" / "history.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "valid"] == [4, 8, 12]


def test_load_run_rebuilds_task_and_model_without_pickle(tmp_path, monkeypatch):
    task = small_task()
    model = small_model(task, attention="luong-general", decoder="luong")
    res = train(task, model, steps=4, out_dir=tmp_path, **run_kw())
    assert res["run_dir"] == str(tmp_path) and (tmp_path / "metrics.json").is_file()

    def no_pickle(*a, **k):
        raise AssertionError("loading a run must not unpickle anything")

    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(torch, "load", no_pickle)
    task2, model2, meta = load_run(tmp_path)
    assert meta["config"] == model.config and task2.src_vocab == task.src_vocab
    best, _ = load_checkpoint(tmp_path, "best")
    for k, v in split_prefix(best, "model").items():
        assert torch.equal(model2.state_dict()[k], v)
    assert not model2.training


def test_budget_and_option_errors():
    task = small_task()
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        train(task, small_model(task), steps=2, batch_size=0, progress=False)
    no_cuda = not torch.cuda.is_available()
    match = "no CUDA device|use --device cpu" if no_cuda else "device"
    with pytest.raises(ValueError, match=match):
        train(task, small_model(task), steps=2, device="cuda" if no_cuda else "tpu", progress=False)
    with pytest.raises(ValueError, match="resume=True needs out_dir"):
        train(task, small_model(task), steps=2, resume=True, progress=False)
