"""``attnkit demo``: the whole pipeline on a shrunken task (fast), and the real alignment on a trained model (slow)."""

from __future__ import annotations

import json

import pytest
import torch

from attnkit.cli import demo as demo_mod
from attnkit.cli import main
from attnkit.viz import alignment_grid, argmax_alignment, span_alignment


def test_span_alignment_by_hand():
    # outputs d r e i u n d v i e r z i g (14 chars) over inputs "forty-three" (11 chars)
    src, out = "forty-three", "dreiundvierzig"
    w = torch.zeros(len(out), len(src))
    w[0:4, 6:11] = 0.2  # drei -> three
    w[4:7, 5] = 1.0  # und -> the hyphen
    w[7:14, 0:5] = 0.2  # vierzig -> forty
    spans = span_alignment(w, {"drei": (0, 4), "vierzig": (7, 14)}, {"forty": (0, 5), "three": (6, 11)})
    assert spans == {"drei": "three", "vierzig": "forty"}
    assert demo_mod.probe_alignment(w, src, out) == {"drei": "three", "vierzig": "forty"}
    assert demo_mod.number_word_spans(out, lang="de") == [("drei", 0, 4), ("und", 4, 7), ("vierzig", 7, 14)]
    en_spans = demo_mod.number_word_spans("one thousand, two hundred and thirty-four", lang="en")
    assert en_spans[-2:] == [("thirty", 30, 36), ("four", 37, 41)]
    assert argmax_alignment(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), ["x", "y"], ["a", "b"]) == [("x", "b"), ("y", "a")]
    grid = alignment_grid(torch.tensor([[1.0, 0.0], [0.5, 0.5]]), ["x", "y"], ["ab", "c"])
    assert grid.splitlines() == ["  ac", "  b ", "x █ ", "y ▒▒"]


def test_demo_pipeline_on_a_small_task(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(demo_mod.DEMO, "task_options", {"high": 120, "valid": 10, "test": 20})
    monkeypatch.setitem(demo_mod.DEMO, "model", {**demo_mod.DEMO["model"], "hidden_dim": 16, "embed_dim": 8})
    monkeypatch.setitem(demo_mod.DEMO, "train", {"eval_every": 2, "batch_size": 16})
    out = tmp_path / "demo"
    assert main(["demo", "--steps", "2", "--out", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["task"] == "numbers" and r["attention"] == "bahdanau" and r["decoder"] == "bahdanau"
    assert r["probe"]["input"] == "forty-three" and r["steps"] == 2 and r["run_dir"] == str(out)
    assert (out / "best.json").is_file() and (out / "alignments.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "forty-three" in report and "exact match" in report and "alignments.png" in report


@pytest.mark.slow
def test_trained_model_puts_drei_on_three_and_vierzig_on_forty(tmp_path):
    """Trains numbers 0..999 (43 held out of training) for 300 steps, as the demo does: 2-4 minutes on 2 cores."""
    from attnkit.data import get_task
    from attnkit.data.numbers import number_words
    from attnkit.models import build_model, model_config_for_task
    from attnkit.train import train

    torch.set_num_threads(1)  # the step-by-step RNN ops gain nothing from a second thread
    task = get_task("numbers", high=999, valid=50, test=100, seed=0)
    # keep 43 out of training whatever the split: it must be a held-out probe
    task.splits["train"] = [e for e in task.splits["train"] if e.src != "forty-three"]
    task._pairs.clear()
    torch.manual_seed(0)
    model = build_model(model_config_for_task("seq2seq", task, attention="bahdanau", decoder="bahdanau"))
    res = train(task, model, steps=300, batch_size=128, lr=4e-3, eval_every=50, eval_examples=50, progress=False)
    assert res["exact_match"] >= 0.9
    src = number_words(43)
    [(toks, align)] = task.predict(model, [src])
    assert "".join(toks) == "dreiundvierzig"
    assert demo_mod.probe_alignment(align, src, "".join(toks)) == {"drei": "three", "vierzig": "forty"}
