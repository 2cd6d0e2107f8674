"""``attnkit train / demo`` failures: one line naming the flag (exit 2), never a traceback; under
``--json`` one JSON object with the error on stdout; ``--resume`` refuses what it cannot honour."""

from __future__ import annotations

import json
import time

import pytest
import torch
from safetensors.torch import load, save

from attnkit.cli import main
from attnkit.data import get_task
from attnkit.train.checkpoint import _record_digest

TINY = [
    "--task-option",
    "train=64",
    "--task-option",
    "valid=8",
    "--task-option",
    "test=8",
    "--task-option",
    "max_len=4",
    "--hidden-dim",
    "16",
    "--embed-dim",
    "8",
    "--batch-size",
    "16",
    "--eval-every",
    "2",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def fails(argv, capsys, code=2):
    """Run ``attnkit ARGV``; it must fail with ``code``, one line on stderr and no traceback."""
    assert main(argv) == code
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"attnkit {argv[0]}: error: "), cap.err
    return lines[0], cap.out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run") / "reverse"
    assert main(["train", "reverse", "--steps", "2", "--out", str(d), "--json", *TINY]) == 0
    return d


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--lr", "0.1"], "--lr"),
        (["--batch-size", "8"], "--batch-size"),
        (["--attention", "luong-dot"], "--attention"),
        (["--seed", "1"], "--seed"),
        (["--hidden-dim", "32", "--task-option", "max_len=5"], "--hidden-dim, --task-option"),
        (["--force"], "--force"),
    ],
)
def test_resume_refuses_the_flags_that_would_make_another_run(run_dir, capsys, flags, named):
    before = (run_dir / "last.json").read_bytes()
    line, _ = fails(["train", "--resume", str(run_dir), "--steps", "4", *flags], capsys)
    assert f"drop {named} " in line and "start a new run with --out" in line
    assert (run_dir / "last.json").read_bytes() == before


def test_resume_refuses_another_out_and_accepts_its_own(run_dir, capsys, tmp_path):
    line, _ = fails(["train", "--resume", str(run_dir), "--out", str(tmp_path / "elsewhere")], capsys)
    assert "drop --out" in line
    assert (
        main(["train", "--resume", str(run_dir), "--out", str(run_dir), "--steps", "3", "--eval-every", "3", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 3  # --steps and --eval-every apply


def test_a_second_run_into_one_out_is_refused_and_force_replaces_it(tmp_path, capsys):
    d = tmp_path / "r"
    assert main(["train", "reverse", "--steps", "2", "--out", str(d), "--json", *TINY]) == 0
    capsys.readouterr()
    line, out = fails(["train", "reverse", "--steps", "2", "--out", str(d), "--json", *TINY], capsys)
    assert "already holds a run" in line and f"attnkit train --resume {d}" in line and "--force" in line
    assert json.loads(out)["error"] == line.split("error: ", 1)[1]
    assert main(["train", "reverse", "--steps", "4", "--out", str(d), "--force", "--json", *TINY]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 4


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["--device", "tpu"], "--device tpu"),
        (["--device", "mps"], "--device mps: no Apple MPS device"),
        (["--steps", "0"], "--steps must be a positive int, got 0"),
        (["--task-option", "max_len=abc"], "option max_len must be an int (like its default max_len=10), got 'abc'"),
        (["--task-option", "colour=red"], "has no option 'colour'"),
    ],
)
def test_bad_flags_give_one_line_and_under_json_one_object(tmp_path, capsys, argv, expect):
    for json_flag in ([], ["--json"]):
        line, out = fails(["train", "reverse", "--out", str(tmp_path / "r"), *TINY, *argv, *json_flag], capsys)
        assert expect in line, line
        if json_flag:
            obj = json.loads(out)  # the whole of stdout is one JSON object
            assert obj == {"error": line.split("error: ", 1)[1], "command": "train", "exit_code": 2}
        else:
            assert out == "" or "Traceback" not in out


def test_an_out_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("x")
    for out in (f, f / "sub"):
        line, _ = fails(["train", "reverse", "--steps", "2", "--out", str(out), *TINY], capsys)
        assert f"--out {out} is not a directory" in line


def test_a_nan_loss_names_the_learning_rate(tmp_path, capsys):
    # lr 1e38: Adam moves every weight by ~1e38 in the first update; the loss is no longer finite by step 2
    line, _ = fails(["train", "reverse", "--steps", "20", "--lr", "1e38", "--out", str(tmp_path / "r"), *TINY], capsys)
    assert "the loss became" in line and "--lr 1e+38 may be too high (try --lr 2.5e+37)" in line


def test_resuming_weights_that_no_longer_fit_the_model(run_dir, capsys, tmp_path):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(run_dir, d)
    rec = json.loads((d / "last.json").read_text())
    w = d / rec["weights"]
    tensors = load(w.read_bytes())
    name = next(k for k in tensors if k.startswith("model/") and k.endswith("weight"))
    tensors[name] = torch.zeros(3, 3)  # as if the model's code had changed the layer's size
    data = save(tensors)
    w.write_bytes(data)
    import hashlib

    rec["sha256"] = hashlib.sha256(data).hexdigest()
    rec["record_sha256"] = _record_digest(rec)  # a consistent record: only the weights' shape is wrong
    (d / "last.json").write_text(json.dumps(rec))
    line, _ = fails(["train", "--resume", str(d), "--steps", "4"], capsys)
    assert "[3, 3]; the model built from its config has" in line


def test_a_string_task_option_keeps_its_text():
    assert get_task("reverse", alphabet="123", train=20, valid=2, test=2, max_len=4).options["alphabet"] == "123"
    with pytest.raises(
        TypeError,
        match=r"option alphabet must be a string \(like its default alphabet='abcdefghijklmnopqrst'\), got 123 \(int\)",
    ):
        get_task("reverse", alphabet=123)


def test_task_option_alphabet_123_on_the_command_line(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "reverse",
                "--steps",
                "1",
                "--out",
                str(tmp_path / "r"),
                "--json",
                *TINY,
                "--task-option",
                "alphabet=123",
                "--task-option",
                "min_len=3",
                "--task-option",
                "train=30",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 1


def test_demo_steps_zero_is_refused_at_once(tmp_path, capsys):
    t = time.perf_counter()
    line, out = fails(["demo", "--steps", "0", "--out", str(tmp_path / "d"), "--json"], capsys)
    assert time.perf_counter() - t < 5 and "--steps must be >= 1, got 0" in line
    assert json.loads(out)["exit_code"] == 2 and not (tmp_path / "d").exists()


def test_a_usage_error_under_json_is_one_object_too(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "reverse", "--steps", "abc", "--json"])
    assert e.value.code == 2
    cap = capsys.readouterr()
    assert json.loads(cap.out) == {
        "error": "argument --steps: invalid int value: 'abc'",
        "command": "train",
        "exit_code": 2,
    }
    assert "usage: attnkit train" in cap.err
    with pytest.raises(SystemExit):
        main(["train", "reverse", "--steps", "abc"])
    assert capsys.readouterr().out == ""  # without --json, stdout stays empty
