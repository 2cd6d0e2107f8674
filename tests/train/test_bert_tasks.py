"""BERT on the two encoder-only tasks, end to end: train a few steps, evaluate the run, compare with baselines."""

from __future__ import annotations

import json

import pytest
import torch

from attnkit.cli import main
from attnkit.data import get_task
from attnkit.data.shakespeare import GENRES

SMALL = {"mlm": ["hamlet"], "genre": ["hamlet", "the-tempest"]}  # the genre task needs two kinds of play


def _train_and_evaluate(task: str, plays: list[str], out, capsys) -> tuple[dict, dict]:
    opts = ["--task-option", f"plays={json.dumps(plays)}", "--task-option", "block_size=16",
            "--task-option", "eval_tokens=512"]
    argv = ["train", task, "--model", "bert", "--steps", "4", "--hidden-dim", "32", "--batch-size", "8",
            "--eval-every", "2", "--threads", "1", "--out", str(out), "--json", *opts]
    assert main(argv) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["evaluate", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    torch.set_num_threads(1)
    return trained, evaluated


def test_bert_masked_lm_trains_and_evaluates(tmp_path, capsys) -> None:
    trained, evaluated = _train_and_evaluate("shakespeare-mlm", SMALL["mlm"], tmp_path / "mlm", capsys)
    assert trained["model"] == "bert" and trained["steps"] == 4
    for r in (trained, evaluated):
        for k in ("loss", "bits_per_char", "perplexity", "accuracy", "tokens", "examples"):
            assert k in r, k
        assert 0.0 <= r["accuracy"] <= 1.0 and r["loss"] > 0 and r["examples"] == 512 // 16
    assert trained["tokens_per_second"] > 0 and trained["train_tokens"] == 4 * 8 * 16
    # the run directory reloads to the same weights: evaluate repeats the training run's test score
    assert evaluated["accuracy"] == pytest.approx(trained["accuracy"]) and evaluated["split"] == "test"


def test_bert_genre_classifier_trains_and_evaluates(tmp_path, capsys) -> None:
    trained, evaluated = _train_and_evaluate("shakespeare-genre", SMALL["genre"], tmp_path / "genre", capsys)
    for r in (trained, evaluated):
        for k in ("loss", "accuracy", "examples"):
            assert k in r, k
        assert 0.0 <= r["accuracy"] <= 1.0 and r["examples"] == 512 // 16
    assert evaluated["accuracy"] == pytest.approx(trained["accuracy"])


def test_mlm_baselines_by_hand() -> None:
    task = get_task("shakespeare-mlm", plays=SMALL["mlm"], block_size=16, eval_tokens=1024)
    b = task.baselines("test")
    # the most frequent character of the train split, counted directly on the text
    text = task.texts["train"]
    top = max(set(text), key=text.count)
    g = torch.Generator().manual_seed(1234)
    right = total = 0
    for batch in task.batches("test", 64, generator=g, shuffle=False):
        right += int(((batch.y == task.vocab.stoi[top]) & batch.target_mask).sum())
        total += int(batch.target_mask.sum())
    assert b["most_frequent"] == pytest.approx(right / total)
    assert 0 < b["most_frequent"] < b["bigram"] < b["neighbours"] < 1  # more context, better guesses


def test_genre_majority_baseline_by_hand() -> None:
    task = get_task("shakespeare-genre", plays=["hamlet", "macbeth", "the-tempest"], block_size=16, eval_tokens=1024)
    b = task.baselines("test")
    assert b["majority_class"] == "tragedies"  # two tragedies, one romance
    labels = torch.cat([batch.label for batch in task.batches("test", 64, shuffle=False)])
    assert b["majority"] == pytest.approx(float((labels == GENRES.index("tragedies")).float().mean()))
