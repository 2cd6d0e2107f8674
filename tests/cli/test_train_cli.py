"""``attnkit train / evaluate / predict / compare``: JSON last lines, shaded grids, plots, errors."""

from __future__ import annotations

import json

import pytest

from attnkit.cli import main

TINY = ["--task-option", "train=64", "--task-option", "valid=8", "--task-option", "test=8",
        "--task-option", "max_len=4",
        "--hidden-dim", "16", "--embed-dim", "8", "--batch-size", "16", "--eval-every", "3"]


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run") / "reverse"
    assert main(["train", "reverse", "--attention", "luong-general", "--decoder", "luong", "--steps", "3",
                 "--out", str(d), "--json", *TINY]) == 0
    return d


def test_train_json_is_the_last_line(run_dir, capsys):
    capsys.readouterr()
    assert main(["train", "reverse", "--steps", "2", "--out", str(run_dir.parent / "r2"), "--json", *TINY]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1  # quiet: no progress bar, no table
    r = last_json(out)
    for k in ("task", "model", "attention", "exact_match", "token_error_rate", "word_error_rate",
              "steps", "seconds", "run_dir"):
        assert k in r, k
    assert r["task"] == "reverse" and r["attention"] == "bahdanau" and r["steps"] == 2


def test_evaluate_json(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--json", "--beam", "2"]) == 0
    r = last_json(capsys.readouterr().out)
    assert r["attention"] == "luong-general" and r["split"] == "test"
    assert 0 <= r["exact_match"] <= 1 and r["examples"] == 8


def test_predict_prints_a_grid_and_saves_a_plot(run_dir, capsys, tmp_path):
    png = tmp_path / "a.png"
    assert main(["predict", str(run_dir), "abcd", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("abcd -> ")
    assert any(ch in out for ch in "░▒▓█")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["predict", str(run_dir), "ab", "--json"]) == 0
    r = last_json(capsys.readouterr().out)
    assert r["input_tokens"] == ["a", "b"] and len(r["alignment"][0]) == 2


def test_predict_names_out_of_vocabulary_characters(run_dir, capsys):
    assert main(["predict", str(run_dir), "ab?Z"]) == 2
    err = capsys.readouterr().err
    assert "'?', 'Z'" in err and "never saw" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "nubmers"], "did you mean 'numbers'? valid tasks: cluttered-digits, copy, dates, digits, g2p"),
        (["train", "reverse", "--attention", "bahdanu", *TINY], "unknown attention mechanism 'bahdanu'"),
        (["train", "reverse", "--decoder", "transformer", *TINY], "valid decoders: bahdanau, luong"),
        (["train"], "name a task"),
        (["train", "reverse", "--task-option", "high"], "KEY=VALUE"),
    ],
)
def test_bad_names_exit_2_with_the_valid_ones(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_broken_run_dirs_are_one_line_errors(tmp_path, run_dir, capsys):
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    w = next(run_dir.glob("best-*.safetensors"))
    good = w.read_bytes()
    try:
        w.write_bytes(good[:-3] + b"xyz")
        assert main(["predict", str(run_dir), "ab"]) == 2
        assert "sha256" in capsys.readouterr().err
    finally:
        w.write_bytes(good)


def test_compare_tabulates_each_mechanism(tmp_path, capsys):
    assert main(["compare", "reverse", "--attention", "bahdanau,luong-dot", "--steps", "2",
                 "--out", str(tmp_path), *TINY]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if "exact match" in line)
    assert "CER" in lines[header] and "WER" in lines[header] and "parameters" in lines[header]
    assert lines[header + 2].startswith("bahdanau") and lines[header + 3].startswith("luong-dot")
    assert len(json.loads((tmp_path / "compare.json").read_text())) == 2
    assert main(["compare", "reverse", "--attention", "bahdanau,nope", "--steps", "1", *TINY]) == 2
    assert "unknown attention mechanism 'nope'" in capsys.readouterr().err


def test_resume_from_the_cli(run_dir, capsys):
    assert main(["train", "--resume", str(run_dir), "--steps", "5", "--json"]) == 0
    r = last_json(capsys.readouterr().out)
    assert r["steps"] == 5 and r["attention"] == "luong-general"
