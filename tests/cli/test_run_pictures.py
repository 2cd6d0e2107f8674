"""The run directory and its pictures (issue 12, section 4): ``attnkit train`` writes the demo's report,
``history.jsonl`` holds the training loss, ``attnkit plot`` draws it, ``attnkit tasks`` lists the data,
BERT runs are plotted from the CLI, and ``demo`` points ``runs/demo-latest`` at its run.

Figures are caught where they are saved (``attnkit.viz.style.save_figure``) and inspected as objects.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from attnkit.cli import demo as demo_mod
from attnkit.cli import main
from attnkit.data import get_task
from attnkit.models import build_model, model_config_for_task
from attnkit.train import load_run, train
from attnkit.viz import read_history, style

pytest.importorskip("matplotlib")

TINY = ["--task-option", "train=64", "--task-option", "valid=8", "--task-option", "test=8",
        "--task-option", "max_len=4", "--hidden-dim", "16", "--embed-dim", "8", "--batch-size", "16"]
LM = {"plays": ["hamlet"], "block_size": 32, "eval_tokens": 512}


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """File name -> the Figure saved there (still written to disk)."""
    figures: dict[str, object] = {}
    real = style.save_figure

    def spy(fig, path):
        figures[Path(path).name] = fig
        return real(fig, path)

    monkeypatch.setattr(style, "save_figure", spy)
    return figures


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _grid(fig) -> set[tuple[int, int]]:
    return {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes if ax.images}


def test_train_writes_the_report_and_history_holds_every_step_loss(tmp_path, capsys, saved):
    out = tmp_path / "rev"
    assert main(["train", "reverse", "--steps", "4", "--eval-every", "2", "--out", str(out), "--json", *TINY]) == 0
    r = _last_json(capsys.readouterr().out)
    assert r["report"] == str(out / "report.md")
    assert {"report.md", "curves.png", "alignments.png"} <= {p.name for p in out.iterdir()}
    report = (out / "report.md").read_text()
    assert "# attnkit: seq2seq on reverse" in report and "| exact match |" in report
    assert "| exact match (validation, best) |" in report
    assert "![alignments](alignments.png)" in report and "![curves](curves.png)" in report
    assert "## Test examples" in report
    events = read_history(out)
    train_ev = [e for e in events if e["event"] == "train"]
    assert [e["step"] for e in train_ev] == [1, 2, 3, 4]
    assert all(isinstance(e["loss"], float) and e["lr"] > 0 for e in train_ev)
    # the report's alignment figure: one panel per test input, the figure's style
    fig = saved["alignments.png"]
    assert fig.axes[0].images[0].get_cmap().name == "viridis" and "output token" in fig.get_suptitle()


def test_plot_draws_the_curves_of_a_run(tmp_path, capsys, saved):
    out = tmp_path / "rev"
    assert main(["train", "reverse", "--steps", "3", "--eval-every", "3", "--out", str(out), "--json", *TINY]) == 0
    losses = [e["loss"] for e in read_history(out) if e["event"] == "train"]
    capsys.readouterr()
    svg = tmp_path / "c.svg"
    assert main(["plot", str(out), "-o", str(svg), "--json"]) == 0
    assert _last_json(capsys.readouterr().out) == {"plot": str(svg), "train_steps": 3, "validations": 1}
    assert svg.read_text().startswith("<?xml")
    loss_ax, valid_ax = saved["c.svg"].axes[:2]
    assert list(loss_ax.lines[0].get_ydata()) == losses  # each step's loss, as history.jsonl has it
    assert loss_ax.get_title() == "training loss" and valid_ax.get_title() == "validation"
    assert any(ln.get_label() == "exact_match" for ax in saved["c.svg"].axes for ln in ax.lines)
    assert main(["plot", str(out)]) == 0 and (out / "curves.png").is_file()
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert "nothing is not a run directory" in capsys.readouterr().err
    assert main(["plot", str(out), "-o", "c.txt"]) == 2
    assert "--output c.txt: use a .png" in capsys.readouterr().err


def test_tasks_lists_source_and_size(capsys):
    assert main(["tasks", "numbers", "reverse", "shakespeare", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["numbers"]["sizes"] == {"train": 800, "valid": 50, "test": 150}  # 0..999, 50 + 150 held out
    assert rows["numbers"]["unit"] == "examples" and "num2words" in rows["numbers"]["source"]
    assert rows["reverse"]["sizes"] == {"train": 20000, "valid": 500, "test": 1000}
    assert "reversed" in rows["reverse"]["source"]
    assert rows["shakespeare"]["unit"] == "characters" and rows["shakespeare"]["sizes"]["train"] > 4_000_000
    assert main(["tasks", "numbers"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("numbers"))
    assert "num2words" in line and "800 / 50 / 150 examples" in line and "exact_match" in line
    assert main(["tasks", "numbrs"]) == 2
    assert "did you mean 'numbers'" in capsys.readouterr().err


def test_tasks_names_the_extra_of_a_missing_package(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "num2words", None)
    assert main(["tasks", "numbers"]) == 0
    out = capsys.readouterr().out
    assert "the num2words package" in out and "pip install 'attnkit[data]'" in out


def _lm_run(tmp: Path, task_name: str, model_name: str) -> Path:
    task = get_task(task_name, **LM)
    cfg = model_config_for_task(model_name, task, num_layers=2, num_heads=2, dim=16)
    out = tmp / f"{task_name}-{model_name}"
    train(task, build_model(cfg), steps=2, eval_every=2, out_dir=out, progress=False, final_eval=False)
    return out


def test_gpt_report_draws_every_head_of_every_layer(tmp_path, saved):
    from attnkit.train import write_report

    out = _lm_run(tmp_path, "shakespeare", "gpt")
    task, model, _ = load_run(out)
    written = write_report(out, task, model, {"steps": 2, "loss": 3.0})
    assert [Path(p).name for p in written["pictures"]] == ["curves.png", "heads.png"]
    assert _grid(saved["heads.png"]) == {(2, 2)}  # rows: layers, columns: heads
    report = Path(written["report"]).read_text()
    assert "![heads](heads.png)" in report and "| loss | 3 |" in report
    sample = report.split("## Sample")[1].split("```")[1].strip("\n")
    assert sample.startswith(task.vocab.decode(task.data["test"][:32].tolist())) and len(sample) == 32 + 80


def test_generate_plot_is_a_layers_by_heads_grid(tmp_path, capsys, saved):
    out = _lm_run(tmp_path, "shakespeare", "gpt")
    assert main(["predict", str(out), "HAMLET"]) == 2
    assert "use `attnkit generate" in capsys.readouterr().err
    png = tmp_path / "g.png"
    assert main(["generate", str(out), "--prompt", "HAMLET:", "--max-new-tokens", "5", "--plot", str(png),
                 "--json"]) == 0
    assert _grid(saved["g.png"]) == {(2, 2)}
    assert main(["generate", str(out), "--prompt", "HAMLET:", "--max-new-tokens", "5", "--plot", str(png),
                 "--layer", "-1", "--json"]) == 0
    assert _grid(saved["g.png"]) == {(1, 2)} and "layer 1" in saved["g.png"].get_suptitle()


def test_bert_runs_are_plotted_and_predicted_from_the_cli(tmp_path, capsys, saved):
    """Before: predict refused every BERT run ("not a sequence-to-sequence task"), though BERT's own error sent
    users there."""
    out = _lm_run(tmp_path, "shakespeare-mlm", "bert")
    png = tmp_path / "b.png"
    assert main(["predict", str(out), "To be, or not to b_", "--plot", str(png), "--json"]) == 0
    r = _last_json(capsys.readouterr().out)
    assert r["input"] == "To be, or not to b_" and len(r["output"]) == len(r["input"])
    assert r["output"][:-1] == "To be, or not to b" and r["plot"] == str(png)
    fig = saved["b.png"]
    assert _grid(fig) == {(2, 2)} and "bert" in fig.get_suptitle()
    bottom = next(ax for ax in fig.axes if ax.get_title() == "layer 1 · head 0")
    labels = [t.get_text() for t in bottom.get_xticklabels()]
    assert labels[0] == "T" and all(t.get_rotation() == 0 for t in bottom.get_xticklabels())
    genre = _lm_run(tmp_path, "shakespeare-genre", "bert")
    assert main(["predict", str(genre), "O Romeo, Romeo", "--json"]) == 0
    g = _last_json(capsys.readouterr().out)
    assert g["label"] in g["probabilities"] and abs(sum(g["probabilities"].values()) - 1) < 1e-5
    assert main(["predict", str(out), "€"]) == 2
    assert "never saw: '€'" in capsys.readouterr().err


def _small_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(demo_mod.DEMO, "task_options", {"high": 120, "valid": 10, "test": 20})
    monkeypatch.setitem(demo_mod.DEMO, "model", {**demo_mod.DEMO["model"], "hidden_dim": 16, "embed_dim": 8})
    monkeypatch.setitem(demo_mod.DEMO, "train", {"eval_every": 2, "batch_size": 16})


def test_demo_points_runs_demo_latest_at_its_run(tmp_path, monkeypatch, capsys):
    """Before: the README's runs/demo-*/ glob named every demo run at once after the second one."""
    _small_demo(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--steps", "2", "--json"]) == 0
    first = Path(_last_json(capsys.readouterr().out)["run_dir"])
    assert main(["demo", "--steps", "2", "--json"]) == 0
    second = Path(_last_json(capsys.readouterr().out)["run_dir"])
    latest = Path("runs") / "demo-latest"
    assert first != second and latest.is_symlink() and latest.resolve() == second.resolve()
    assert {"report.md", "alignments.png", "curves.png"} <= {p.name for p in latest.iterdir()}
    assert main(["predict", str(latest), "forty-three", "--json"]) == 0
    assert _last_json(capsys.readouterr().out)["input"] == "forty-three"


def test_where_links_fail_demo_latest_is_a_pointer_file(tmp_path, monkeypatch, capsys):
    def no_links(self, target, target_is_directory=False):
        raise OSError("symbolic links are not supported here")

    monkeypatch.setattr(Path, "symlink_to", no_links)
    run = tmp_path / "runs" / "demo-20261202-010000"
    run.mkdir(parents=True)
    link = demo_mod.point_latest(run)
    assert link.is_file() and not link.is_symlink() and link.read_text() == "demo-20261202-010000\n"
    from attnkit.train import resolve_run_dir

    assert resolve_run_dir(link) == run
    (tmp_path / "runs" / "other").write_text("../../etc\n")
    with pytest.raises(ValueError, match="is a file, not a run directory"):
        resolve_run_dir(tmp_path / "runs" / "other")


def test_without_matplotlib_the_report_is_written_and_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "rev"
    assert main(["train", "reverse", "--steps", "2", "--eval-every", "2", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "(no pictures: plotting needs the 'matplotlib' package" in printed and "attnkit[viz]" in printed
    report = (out / "report.md").read_text()
    assert "Not drawn: plotting needs the 'matplotlib' package" in report and "Alignment of" in report
    assert not list(out.glob("*.png"))
    assert main(["plot", str(out)]) == 2
    assert "pip install 'attnkit[viz]'" in capsys.readouterr().err


def test_a_new_pointer_replaces_the_old_one_and_a_real_directory_is_kept(tmp_path):
    runs = tmp_path / "runs"
    for name in ("demo-a", "demo-b"):
        (runs / name).mkdir(parents=True)
    assert demo_mod.point_latest(runs / "demo-a").resolve() == (runs / "demo-a").resolve()
    assert demo_mod.point_latest(runs / "demo-b").resolve() == (runs / "demo-b").resolve()
    assert sorted(p.name for p in runs.iterdir()) == ["demo-a", "demo-b", "demo-latest"]  # no temporary left
    (runs / "demo-latest").unlink()
    (runs / "demo-latest").mkdir()
    with pytest.raises(demo_mod.CliError, match="is a directory"):
        demo_mod.point_latest(runs / "demo-a")


def test_transformer_report_draws_alignments_and_every_cross_attention_head(tmp_path, saved):
    from attnkit.train import write_report

    task = get_task("reverse", train=200, valid=20, test=20)
    cfg = model_config_for_task("transformer", task, dim=16, num_heads=2, encoder_layers=1, decoder_layers=2)
    model = build_model(cfg)
    out = tmp_path / "tf"
    result = train(task, model, steps=2, eval_every=2, out_dir=out, progress=False, eval_examples=5)
    written = write_report(out, task, model, result, examples=3)
    assert [Path(p).name for p in written["pictures"]] == ["curves.png", "alignments.png", "heads.png"]
    assert _grid(saved["heads.png"]) == {(2, 2)}  # rows: the first 2 test inputs, columns: heads
    assert "decoder layer 1" in saved["heads.png"].get_suptitle()
    assert len([ax for ax in saved["alignments.png"].axes if ax.images]) == 4  # the first 4 test inputs
    assert (out / "report.md").read_text().count("| no (") + (out / "report.md").read_text().count("| yes |") == 3
