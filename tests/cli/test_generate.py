"""``attnkit generate``: sampling from a run directory, cache on/off, per-head plots, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnkit.cli import main
from attnkit.data import get_task
from attnkit.models import build_model, model_config_for_task
from attnkit.train import train

OPTS = {"plays": ["hamlet"], "block_size": 32, "eval_tokens": 512}


def _run(tmp: Path, task_name: str, model_name: str, **model_kw) -> str:
    task = get_task(task_name, **OPTS)
    cfg = model_config_for_task(model_name, task, num_layers=2, num_heads=2, dim=16, **model_kw)
    out = tmp / f"{task_name}-{model_name}"
    train(task, build_model(cfg), steps=3, eval_every=3, out_dir=out, progress=False, final_eval=False)
    return str(out)


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _run(tmp_path_factory.mktemp("gen"), "shakespeare", "gpt")


def _json(capsys: pytest.CaptureFixture) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_generate_continues_the_prompt(gpt_run: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["generate", gpt_run, "--prompt", "HAMLET:", "--max-new-tokens", "40", "--json", "--seed", "1"]) == 0
    out = _json(capsys)
    (text,) = out["samples"]
    assert text.startswith("HAMLET:") and len(text) == len("HAMLET:") + 40
    # the same seed gives the same text, with and without the KV cache
    assert main(["generate", gpt_run, "--prompt", "HAMLET:", "--max-new-tokens", "40", "--json", "--seed", "1",
                 "--no-cache"]) == 0
    assert _json(capsys)["samples"] == [text]
    assert main(["generate", gpt_run, "--prompt", "HAMLET:", "--max-new-tokens", "40", "--json", "--seed", "2"]) == 0
    assert _json(capsys)["samples"] != [text]


def test_greedy_is_deterministic_and_prints_text(gpt_run: str, capsys: pytest.CaptureFixture) -> None:
    args = ["generate", gpt_run, "--prompt", "O", "--max-new-tokens", "12", "--temperature", "0", "--num-samples", "2"]
    assert main(args) == 0
    out = capsys.readouterr()
    samples = out.out.split("--- sample 2 ---\n")
    assert samples[0].replace("--- sample 1 ---\n", "") == samples[1]
    assert "KV cache" in out.err


def test_plot_draws_every_head_of_the_layer(gpt_run: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    png = tmp_path / "heads.png"
    assert main(["generate", gpt_run, "--prompt", "HAMLET:", "--max-new-tokens", "10", "--plot", str(png),
                 "--layer", "0", "--plot-chars", "12", "--json"]) == 0
    assert _json(capsys)["plot"] == str(png) and png.stat().st_size > 1000
    assert main(["generate", gpt_run, "--prompt", "O", "--max-new-tokens", "2",
                 "--plot", str(png), "--layer", "5"]) == 2
    assert "the model has 2 layers" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompt", "Ay€"], "never saw: '€'"),
        (["--prompt", "x" * 40], "block_size) is 32; shorten it to its last 32"),
        (["--prompt", ""], "--prompt is empty"),
        (["--top-p", "2"], "--top-p must be in (0, 1]"),  # the library names top_p; the CLI its flag
    ],
)
def test_bad_input_is_one_clear_line(
    gpt_run: str, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    assert main(["generate", gpt_run, "--max-new-tokens", "3", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_encoder_only_run_cannot_generate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = _run(tmp_path, "shakespeare-mlm", "bert")
    assert main(["generate", run, "--prompt", "O"]) == 2
    err = capsys.readouterr().err
    assert "encoder-only" in err and "--model gpt" in err


def test_predict_plots_every_cross_attention_head_of_a_layer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    task = get_task("reverse", train=200, valid=20, test=20)
    cfg = model_config_for_task("transformer", task, dim=16, num_heads=2, encoder_layers=1, decoder_layers=2)
    run = tmp_path / "reverse-tf"
    train(task, build_model(cfg), steps=2, eval_every=2, out_dir=run, progress=False, final_eval=False,
          eval_examples=5)
    png = tmp_path / "cross.png"
    assert main(["predict", str(run), "abc", "--plot", str(png), "--layer", "-1", "--no-grid"]) == 0
    assert "every head of layer -1" in capsys.readouterr().out and png.stat().st_size > 1000
    assert main(["predict", str(run), "abc", "--plot", str(png), "--layer", "2"]) == 2
    assert "the decoder has 2 layers" in capsys.readouterr().err


def test_threads_sets_torch_threads_and_is_checked(gpt_run: str, capsys: pytest.CaptureFixture) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["generate", gpt_run, "--prompt", "O", "--max-new-tokens", "3", "--json"]) == 0
        assert _json(capsys)["threads"] == 1 == torch.get_num_threads()  # the default: one thread
        assert main(["generate", gpt_run, "--prompt", "O", "--max-new-tokens", "3", "--threads", "2", "--json"]) == 0
        assert _json(capsys)["threads"] == 2 == torch.get_num_threads()
        assert main(["generate", gpt_run, "--prompt", "O", "--max-new-tokens", "3", "--threads", "0"]) == 2
        err = capsys.readouterr().err
        assert "--threads must be >= 1, got 0" in err and err.count("\n") == 1
    finally:
        torch.set_num_threads(before)
