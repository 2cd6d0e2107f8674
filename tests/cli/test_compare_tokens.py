"""Training throughput: ``train()`` reports tokens/s, ``attnkit compare`` tabulates it."""

from __future__ import annotations

import json

import pytest
import torch

from attnkit.cli import main
from attnkit.cli.compare import format_table
from attnkit.data import get_task
from attnkit.data.vocab import PAD
from attnkit.models import build_model, model_config_for_task
from attnkit.train import train
from attnkit.train.loop import epoch_generator

OPTS = {"train": 40, "valid": 8, "test": 8, "max_len": 4}


def test_train_counts_the_non_pad_target_tokens_of_the_batches_it_trained_on() -> None:
    task = get_task("reverse", **OPTS)
    model = build_model(model_config_for_task("seq2seq", task, hidden_dim=16, embed_dim=8))
    steps, bs = 7, 16  # 40 pairs = 3 batches per epoch: 7 steps cross two epoch boundaries
    res = train(task, model, steps=steps, batch_size=bs, eval_every=100, seed=3, progress=False, final_eval=False)
    # replay the loop's data order by hand and count the target tokens that are not padding
    seen, expected, epoch = 0, 0, 0
    while seen < steps:
        for batch in task.batches("train", bs, generator=epoch_generator(3, epoch)):
            if seen == steps:
                break
            expected += int((batch.tgt_out != PAD).sum())
            seen += 1
        epoch += 1
    assert res["train_tokens"] == expected > 0
    assert 0 < res["train_seconds"] <= res["seconds"] + 0.01  # validation is outside train_seconds
    assert res["tokens_per_second"] > 0
    assert res["tokens_per_second"] == pytest.approx(expected / res["train_seconds"], rel=1e-3, abs=0.1)


def test_throughput_of_a_char_batch_is_every_character_trained_on() -> None:
    task = get_task("shakespeare", plays=["hamlet"], block_size=16, eval_tokens=256)
    model = build_model(model_config_for_task("gpt", task, num_layers=1, num_heads=2, dim=16))
    res = train(task, model, steps=3, batch_size=4, eval_every=100, progress=False, final_eval=False)
    assert res["train_tokens"] == 3 * 4 * 16


def test_compare_shows_tokens_per_second_in_the_table_and_json(tmp_path, capsys) -> None:
    opts = [f"--task-option={k}={v}" for k, v in OPTS.items()]
    argv = ["compare", "reverse", "--model", "seq2seq,transformer", "--steps", "2", "--hidden-dim", "16",
            "--batch-size", "16", "--eval-every", "100", "--threads", "1", "--out", str(tmp_path), *opts]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "compare.json").read_text())
    assert [r["label"] for r in rows] == ["seq2seq", "transformer"]
    header = next(line for line in out.splitlines() if line.startswith("model / attention"))
    assert "tokens/s" in header
    for r in rows:
        assert r["tokens_per_second"] > 0 and r["train_tokens"] > 0
        assert r["tokens_per_second"] == pytest.approx(r["train_tokens"] / r["train_seconds"], rel=1e-3, abs=0.1)
        line = next(line for line in out.splitlines() if line.startswith(r["label"] + " "))
        assert f"{r['tokens_per_second']:,.0f}" in line.split()
    torch.set_num_threads(1)


def test_format_table_puts_tokens_per_second_under_its_header_by_hand() -> None:
    rows = [
        {"label": "a", "exact_match": 0.5, "token_error_rate": 0.25, "word_error_rate": 0.5, "parameters": 1234,
         "seconds": 2.0, "tokens_per_second": 12345.6, "steps": 10},
        {"label": "b", "seconds": 1.0, "steps": 3},  # an older compare.json row without throughput
    ]
    lines = format_table(rows, "CER").splitlines()
    head = lines[0]
    col = head.index("tokens/s")
    assert lines[2][col : col + len("tokens/s")].strip() == "12,346"
    assert lines[3][col : col + len("tokens/s")].strip() == "-"
    assert head.split()[-2:] == ["tokens/s", "steps"]
