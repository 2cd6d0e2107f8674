"""Reliability of checkpoints: crafted files, edited records, kill -9 during save, stale temporaries.

Crafted files are what an attacker with write access to a run directory makes: the tensors are
changed and both hashes (the weights' ``sha256`` and the record's ``record_sha256``) recomputed,
so that only validation, never a hash, can stop them. Every one must give one ``CheckpointError``
line naming the file and what is wrong, leave the run directory as it was, and, through the CLI,
exit with status 2 (never a signal: torch's fused AdamW writes out of bounds on a wrong-shaped
moment). The counts at the bottom (``CASES_TRIED``) are what the README's reliability section cites.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

from attnkit.data import get_task
from attnkit.models import build_model, model_config_for_task
from attnkit.train import CheckpointError, load_checkpoint, load_run, resume_run, save_checkpoint, train, write_atomic
from attnkit.train.checkpoint import LIMITS, STALE_TMP_SECONDS, clean_stale_temporaries

FIXTURES = Path(__file__).parents[1] / "fixtures"


# -- a small real run, and how an attacker edits it ------------------------------------------------
@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    task = get_task("reverse", train=64, valid=8, test=8, min_len=2, max_len=4)
    torch.manual_seed(3)
    model = build_model(model_config_for_task("seq2seq", task, hidden_dim=16, embed_dim=8))
    out = tmp_path_factory.mktemp("runs") / "base"
    train(task, model, steps=2, out_dir=out, batch_size=16, eval_every=2, eval_examples=8, warmup=1,
          progress=False, final_eval=False)
    return out


@pytest.fixture
def run(base_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(base_run, copy)
    return copy


def record_hash(meta: dict[str, Any]) -> str:
    """The documented rule: sha256 of the record without ``record_sha256`` as canonical JSON."""
    body = {k: v for k, v in meta.items() if k != "record_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def write_record(rec: Path, meta: dict[str, Any], *, rehash: bool) -> None:
    if rehash:
        meta["record_sha256"] = record_hash(meta)
    rec.write_text(json.dumps(meta, indent=1, sort_keys=True))


def edit_record(run: Path, name: str, change: Callable[[dict], None], *, rehash: bool = True) -> None:
    rec = run / f"{name}.json"
    meta = json.loads(rec.read_text())
    change(meta)
    write_record(rec, meta, rehash=rehash)


def edit_tensors(run: Path, name: str, change: Callable[[dict], None]) -> None:
    """Change the tensors of checkpoint ``name`` and recompute both hashes (a crafted file)."""
    rec = run / f"{name}.json"
    meta = json.loads(rec.read_text())
    w = run / meta["weights"]
    tensors = load_file(w)
    change(tensors)
    save_file(tensors, w)
    meta["sha256"] = hashlib.sha256(w.read_bytes()).hexdigest()
    write_record(rec, meta, rehash=True)


def first_model_key(t: dict) -> str:
    return sorted(k for k in t if k.startswith("model/") and t[k].dim() == 2)[0]


def _opt_shape(t):  # the SIGSEGV of the issue: a moment with more elements than its parameter
    k = "optim/0/exp_avg"
    t[k] = torch.zeros(t[k].numel() * 4 + 7)


def _tensors(fn):
    return lambda run, name: edit_tensors(run, name, fn)


def _record(fn, rehash=True):
    return lambda run, name: edit_record(run, name, fn, rehash=rehash)


def _set(path: str, value: Any, rehash: bool = True):
    def change(meta):
        *parents, leaf = path.split(".")
        d = meta
        for p in parents:
            d = d[p]
        d[leaf] = value
    return _record(change, rehash)


def _group(key, value):
    return _record(lambda m: m["train"]["optimizer"]["param_groups"][0].__setitem__(key, value))


def _longer_vocab(meta):
    meta["vocab"]["src_vocab"]["tokens"] += ["x1", "x2"]


def _swap_vocab(meta):
    toks = meta["vocab"]["tgt_vocab"]["tokens"]
    toks[4], toks[5] = toks[5], toks[4]


def _duplicate_token(meta):
    toks = meta["vocab"]["tgt_vocab"]["tokens"]
    toks.append(toks[4])


def _huge_record(meta):
    meta["metrics"]["padding"] = "x" * (LIMITS["record_bytes"] + 1)


# (id, edit, regex the one-line message matches); every edit keeps both hashes valid unless said
LAST_CASES: list[tuple[str, Callable[[Path, str], None], str]] = [
    ("model-shape", _tensors(lambda t: t.__setitem__(first_model_key(t), t[first_model_key(t)][:, :1].contiguous())),
     r"model/.* is torch.float32 \[\d+, 1\]; the model built from its config has"),
    ("model-dtype", _tensors(lambda t: t.__setitem__(first_model_key(t), t[first_model_key(t)].double())),
     r"model/.* is torch.float64"),
    ("model-missing", _tensors(lambda t: t.pop(first_model_key(t))), r"do not fit the saved model config \(missing"),
    ("model-extra", _tensors(lambda t: t.__setitem__("model/extra.weight", torch.zeros(2))),
     r"unexpected extra\.weight"),
    ("optim-moment-shape", _tensors(_opt_shape), r"optim/0/exp_avg is torch.float32 \[\d+\]; parameter 0 \(.+\) is"),
    ("optim-moment-dtype", _tensors(lambda t: t.__setitem__("optim/1/exp_avg_sq", t["optim/1/exp_avg_sq"].half())),
     r"optim/1/exp_avg_sq is torch.float16"),
    ("optim-missing-moment", _tensors(lambda t: t.pop("optim/2/exp_avg_sq")), r"parameter 2 .*has no exp_avg_sq"),
    ("optim-extra-state", _tensors(lambda t: t.__setitem__("optim/0/foo", torch.zeros(1))), r"unexpected foo"),
    ("optim-index-out-of-range", _tensors(lambda t: t.__setitem__("optim/999/exp_avg", torch.zeros(1))),
     r"optim/999/exp_avg names parameter 999; the optimizer has \d+"),
    ("optim-step-shape", _tensors(lambda t: t.__setitem__("optim/0/step", torch.ones(3))),
     r"optim/0/step is torch.float32 \[3\]; a step count is a float scalar"),
    ("optim-step-nan", _tensors(lambda t: t.__setitem__("optim/0/step", torch.tensor(math.nan))),
     r"optim/0/step is nan; it counts updates"),
    ("rng-size", _tensors(lambda t: t.__setitem__("rng/torch", t["rng/torch"][:100].clone())),
     r"rng/torch is torch.uint8 \[100\]; a generator state is torch.uint8"),
    ("foreign-tensor", _tensors(lambda t: t.__setitem__("evil", torch.zeros(1))), r"unexpected tensor 'evil'"),
    ("group-params", _record(lambda m: m["train"]["optimizer"]["param_groups"][0]["params"].pop()),
     r"parameter group 0 does not list parameters 0\.\.\d+ in order"),
    ("group-flag", _group("differentiable", True), r"differentiable is True, this optimizer runs with False"),
    ("group-betas", _group("betas", [0.9, 1.5]), r"betas must be two numbers in \[0, 1\)"),
    ("group-unknown", _group("initial_lr", 1.0), r"unknown setting 'initial_lr'"),
    ("scalar-step", _record(lambda m: m["train"]["optimizer"]["scalars"].update({"0": {"step": 5}})),
     r"has a scalar 'step' where a tensor is kept"),
    ("no-optimizer", _set("train.optimizer.param_groups", None), r"parameter groups"),
    ("task-train-1e9", _set("task.options.train", 10**9),
     r"task.options.train is 1000000000, above the bound .*LIMITS\['task_number'\]"),
    ("task-train-1e9-float", _set("task.options.train", 1e9), r"task.options.train is 1000000000.0, above the bound"),
    ("task-max-len", _set("task.options.max_len", 100_000), r"task.options.max_len is 100000, above the bound"),
    ("task-unknown-option", _set("task.options.colour", "red"), r"its task cannot be rebuilt \(task 'reverse' has no"),
    ("vocab-longer-than-embedding", _record(_longer_vocab),
     r"vocab.src_vocab has \d+ tokens but config.src_vocab_size"),
    ("vocab-duplicate", _record(_duplicate_token),
     r"lists the token '.' twice"),
    ("vocab-not-strings", _set("vocab.src_vocab.tokens", [1, 2, 3]), r"vocab.src_vocab must be"),
    ("state-offset", _set("train.state.offset", 10**12), r"train.state.offset is 1000000000000, outside the bound"),
    ("state-step", _set("train.state.step", 10**12), r"train.state.step is 1000000000000, outside the bound"),
    ("state-seed", _set("train.state.seed", 2**70), r"train.state.seed is \d+, outside the bound"),
    ("options-batch-size", _set("train.options.batch_size", 0), r"train.options.batch_size is 0, outside the bound"),
    ("options-lr-nan", _set("train.options.lr", math.nan), r"train.options.lr must be a finite number"),
    ("config-huge-dim", _set("config.hidden_dim", 10**9), r"config.hidden_dim is 1000000000, above the bound"),
    ("config-many-layers", _set("config.encoder_layers", 5000), r"config.encoder_layers is 5000, but the weights hold"),
    ("config-other-dim", _set("config.hidden_dim", 24), r"model/.* the model built from its config has"),
    ("config-unknown-field", _set("config.colour", "red"), r"has no field 'colour'"),
    ("record-too-big", _record(_huge_record), r"above the bound of \d+ \(LIMITS\['record_bytes'\]\)"),
    # edits without recomputing the record's hash: the hash refuses them
    ("edited-vocab", _record(_swap_vocab, rehash=False), r"does not match its record_sha256"),
    ("edited-task-size", _set("task.options.train", 10**9, rehash=False), r"does not match its record_sha256"),
    ("edited-step", _set("train.state.step", 1, rehash=False), r"does not match its record_sha256"),
    ("hash-removed", _record(lambda m: m.pop("record_sha256"), rehash=False), r"does not match its record_sha256"),
]

#: crafted ``best`` checkpoints, read by load_run / ``attnkit evaluate`` / ``predict``
BEST_CASES = [c for c in LAST_CASES if c[0].startswith(("model-", "task-", "vocab-", "config-", "edited-vocab",
                                                       "edited-task", "record-", "hash-", "foreign"))]


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


def _assert_one_line(msg: str, run: Path, pattern: str) -> None:
    assert "\n" not in msg, msg
    assert str(run) in msg, msg
    assert re.search(pattern, msg), msg


@pytest.mark.parametrize("edit, pattern", [c[1:] for c in LAST_CASES], ids=[c[0] for c in LAST_CASES])
def test_crafted_last_checkpoint_is_refused_by_resume(run, edit, pattern):
    edit(run, "last")
    before = _snapshot(run)
    with pytest.raises(CheckpointError) as e:
        resume_run(run, steps=4, progress=False)
    _assert_one_line(str(e.value), run, pattern)
    assert _snapshot(run) == before  # nothing was written into the refused run


@pytest.mark.parametrize("edit, pattern", [c[1:] for c in BEST_CASES], ids=[c[0] for c in BEST_CASES])
def test_crafted_best_checkpoint_is_refused_by_load_run(run, edit, pattern):
    edit(run, "best")
    with pytest.raises(CheckpointError) as e:
        load_run(run)
    _assert_one_line(str(e.value), run, pattern)


RESUME_BEST_CASES = ["model-shape", "model-missing", "edited-vocab"]


@pytest.mark.parametrize("case", RESUME_BEST_CASES)
def test_resume_refuses_a_crafted_best_before_it_trains(run, case):
    """The end of a resumed run loads ``best`` into its model: that file is checked up front too."""
    edit, pattern = next(c[1:] for c in BEST_CASES if c[0] == case)
    edit(run, "best")
    before = _snapshot(run)
    with pytest.raises(CheckpointError) as e:
        resume_run(run, steps=4, progress=False)
    _assert_one_line(str(e.value), run / "best.json", pattern)
    assert _snapshot(run) == before


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attnkit", *args], capture_output=True, text=True, timeout=timeout)


CLI_CASES = ["optim-moment-shape", "optim-step-shape", "model-shape", "task-train-1e9", "edited-vocab"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_crafted_resume_exits_2_with_one_line_never_a_signal(run, case):
    edit, pattern = next(c[1:] for c in LAST_CASES if c[0] == case)
    edit(run, "last")
    p = _cli("train", "--resume", str(run), "--steps", "6", "--json")
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])  # a signal would be negative
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnkit train: error: "), p.stderr
    _assert_one_line(lines[0], run, pattern)


@pytest.mark.parametrize("rehash", [False, True], ids=["edited", "crafted"])
def test_evaluate_refuses_a_best_record_set_to_train_1e9_at_once(run, rehash):
    _set("task.options.train", 10**9, rehash=rehash)(run, "best")
    t0 = time.perf_counter()
    p = _cli("evaluate", str(run), timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert ("record_sha256" if not rehash else "LIMITS['task_number']") in p.stderr
    assert time.perf_counter() - t0 < 60


# -- records written before the record was hashed ----------------------------------------------------
@pytest.mark.parametrize("fixture", ["run-361c5ec-seq2seq", "run-361c5ec-transformer"])
def test_unhashed_record_of_an_old_run_loads_and_is_rehashed_on_the_next_save(fixture, tmp_path):
    run = tmp_path / fixture
    shutil.copytree(FIXTURES / fixture, run)
    old = json.loads((run / "last.json").read_text())
    assert old["format"] == "attnkit-checkpoint/1" and "record_sha256" not in old
    load_checkpoint(run, "last")  # accepted: its weights' sha256 is still checked ...
    w = run / old["weights"]
    good = w.read_bytes()
    w.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        load_checkpoint(run, "last")
    w.write_bytes(good)
    edit_record(run, "last", lambda m: m["train"]["state"].__setitem__("offset", 10**9), rehash=False)
    with pytest.raises(CheckpointError, match="train.state.offset is 1000000000, outside the bound"):
        load_checkpoint(run, "last")  # ... and so are the bounds, hash or no hash
    edit_record(run, "last", lambda m: m["train"]["state"].__setitem__("offset", old["train"]["state"]["offset"]),
                rehash=False)
    resume_run(run, steps=old["step"] + 1, progress=False, final_eval=False)
    new = json.loads((run / "last.json").read_text())
    assert new["format"] == "attnkit-checkpoint/2" and new["record_sha256"] == record_hash(new)
    edit_record(run, "last", lambda m: m["train"]["state"].__setitem__("offset", 0), rehash=False)
    with pytest.raises(CheckpointError, match="does not match its record_sha256"):
        load_checkpoint(run, "last")


# -- kill -9 during save ----------------------------------------------------------------------------
SAVER = textwrap.dedent("""
    import sys, torch
    from attnkit.train.checkpoint import load_checkpoint, save_checkpoint
    out, start = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    step = start
    while True:
        save_checkpoint(out, "last", {"model/w": torch.full((1 << 18,), float(step))}, {"step": step, "config": {}})
        step += 1
""")

KILL_ITERATIONS = 6


def test_kill_9_during_save_always_leaves_the_last_committed_checkpoint_loadable(tmp_path):
    rng = random.Random(0)
    out = tmp_path / "run"
    committed = 0
    for _ in range(KILL_ITERATIONS):
        p = subprocess.Popen([sys.executable, "-c", SAVER, str(out), str(committed + 1)], stdout=subprocess.PIPE,
                             text=True)
        try:
            assert p.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.6))
        finally:
            p.kill()  # SIGKILL: no handler, no cleanup
            p.wait(timeout=30)
            p.stdout.close()
        assert p.returncode == -9
        if committed == 0 and not (out / "last.json").exists():
            continue  # killed before its first commit
        tensors, meta = load_checkpoint(out, "last")
        assert meta["step"] >= committed  # a commit is never undone
        assert torch.equal(tensors["model/w"], torch.full((1 << 18,), float(meta["step"])))
        committed = meta["step"]
    assert committed > 0
    save_checkpoint(out, "last", {"model/w": torch.zeros(2)}, {"step": committed + 1, "config": {}})
    names = sorted(f.name for f in out.iterdir())
    assert not [n for n in names if ".tmp-" in n], names  # the killed writers' temporaries are gone
    assert [n for n in names if n.endswith(".safetensors")] == [json.loads((out / "last.json").read_text())["weights"]]


# -- stale temporary files ---------------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_are_removed_and_live_writers_files_kept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _dead_pid()
        files = {
            "dead": f".last-00000001-0a0b0c0d.safetensors.tmp-{dead}-1a2b3c4d",
            "live": f".last.json.tmp-{sleeper.pid}-5e6f7a8b",
            "self": f".best.json.tmp-{os.getpid()}-0f0f0f0f",
            "old-name-fresh": ".last.json.tmp-9a9b9c9d",
            "old-name-stale": ".best.json.tmp-1b1c1d1e",
            "live-but-stale": f".metrics.json.tmp-{sleeper.pid}-2c2d2e2f",
            "not-ours": ".notes.tmp-keep",
        }
        for name in files.values():
            (tmp_path / name).write_bytes(b"partial")
        old = time.time() - STALE_TMP_SECONDS - 5
        for k in ("old-name-stale", "live-but-stale"):
            os.utime(tmp_path / files[k], (old, old))
        save_checkpoint(tmp_path, "last", {"model/w": torch.zeros(1)}, {"step": 1, "config": {}})
        left = {p.name for p in tmp_path.iterdir()}
        assert {k for k, n in files.items() if n in left} == {"live", "self", "old-name-fresh", "not-ours"}
        assert clean_stale_temporaries(tmp_path) == []  # nothing stale is left to remove
    finally:
        sleeper.kill()
        sleeper.wait()


# -- a full disk says what is true ---------------------------------------------------------------------
def _disk_full(monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def test_full_disk_on_a_fresh_run_does_not_claim_a_previous_checkpoint(tmp_path, monkeypatch):
    _disk_full(monkeypatch)
    with pytest.raises(OSError) as e:
        save_checkpoint(tmp_path, "last", {"model/w": torch.zeros(3)}, {"step": 1, "config": {}})
    msg = str(e.value)
    assert "disk is full" in msg and "intact" not in msg
    assert "held no 'last' checkpoint before, so there is none yet" in msg
    with pytest.raises(OSError, match=r"metrics.json \(the disk is full\); metrics.json was not created"):
        write_atomic(tmp_path / "metrics.json", b"{}")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_full_disk_after_a_commit_names_the_intact_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, "last", {"model/w": torch.zeros(3)}, {"step": 7, "config": {}})
    save_checkpoint(tmp_path, "best", {"model/w": torch.zeros(3)}, {"step": 7, "config": {}})
    _disk_full(monkeypatch)
    with pytest.raises(OSError, match=r"the previous checkpoint is intact \(last.json, step 7\)"):
        save_checkpoint(tmp_path, "last", {"model/w": torch.ones(3)}, {"step": 8, "config": {}})
    with pytest.raises(OSError, match=r"metrics.json was not created"):
        write_atomic(tmp_path / "metrics.json", b"{}")
    monkeypatch.undo()
    write_atomic(tmp_path / "metrics.json", b"{}")
    _disk_full(monkeypatch)
    with pytest.raises(OSError, match=r"the previous metrics.json is intact"):
        write_atomic(tmp_path / "metrics.json", b"[]")


#: what the README's reliability section counts (kept true by test_case_counts)
CASES_TRIED = {
    "crafted or edited last checkpoints (resume)": len(LAST_CASES),
    "crafted or edited best checkpoints (load_run)": len(BEST_CASES),
    "crafted best checkpoints (resume)": len(RESUME_BEST_CASES),
    "crafted checkpoints through the CLI (train --resume, evaluate)": len(CLI_CASES) + 2,
    "kill -9 during save": KILL_ITERATIONS,
}


def test_case_counts():
    assert CASES_TRIED == {
        "crafted or edited last checkpoints (resume)": 40,
        "crafted or edited best checkpoints (load_run)": 20,
        "crafted best checkpoints (resume)": 3,
        "crafted checkpoints through the CLI (train --resume, evaluate)": 7,
        "kill -9 during save": 6,
    }
