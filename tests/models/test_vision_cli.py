"""``attnkit train / evaluate / predict / compare`` on the image tasks: JSON last lines, pictures, errors."""

from __future__ import annotations

import json

import pytest

from attnkit.cli import main

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

CNN = ["--hidden-dim", "4", "--batch-size", "32", "--eval-every", "2", "--threads", "1"]
RAM = ["--task-option", "canvas=16", "--hidden-dim", "16", "--batch-size", "32", "--eval-every", "2",
       "--threads", "1"]
PNG = b"\x89PNG\r\n\x1a\n"


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("vision") / "cbam"
    assert main(["train", "digits", "--model", "cnn", "--attention", "cbam", "--steps", "2", "--out", str(d),
                 "--json", *CNN]) == 0
    return d


@pytest.fixture(scope="module")
def ram_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("vision") / "ram"
    assert main(["train", "translated-digits", "--steps", "2", "--out", str(d), "--json", *RAM]) == 0
    return d


def test_train_and_evaluate_report_test_accuracy_on_the_last_line(cnn_run, capsys):
    r = json.loads((cnn_run / "metrics.json").read_text())
    assert r["model"] == "cnn" and r["attention"] == "cbam" and 0 <= r["accuracy"] <= 1 and r["examples"] == 359
    capsys.readouterr()
    assert main(["evaluate", str(cnn_run), "--json"]) == 0
    e = last_json(capsys.readouterr().out)
    assert e["accuracy"] == pytest.approx(r["accuracy"]) and e["split"] == "test"


def test_predict_plots_spatial_maps_and_channel_weights(cnn_run, capsys, tmp_path):
    png = tmp_path / "maps.png"
    assert main(["predict", str(cnn_run), "0", "7", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test image 0: class ") and "test image 7" in out
    assert png.read_bytes()[:8] == PNG
    assert main(["predict", str(cnn_run), "3", "--json"]) == 0
    item = last_json(capsys.readouterr().out)
    assert item["index"] == 3 and item["label"] in "0123456789" and 0 < item["probability"] <= 1


def test_ram_trains_from_defaults_and_draws_its_glimpse_path(ram_run, capsys, tmp_path):
    r = json.loads((ram_run / "metrics.json").read_text())
    assert r["model"] == "ram" and "accuracy" in r
    png = tmp_path / "glimpses.png"
    assert main(["predict", str(ram_run), "--plot", str(png), "--json"]) == 0
    items = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(items) == 6 and len(items[0]["glimpses"]) == 6  # the first six test images, six glimpses
    assert items[0]["glimpses"][0] == [7.5, 7.5]  # the first glimpse: the centre of the 16x16 canvas
    assert png.read_bytes()[:8] == PNG


def test_compare_over_seeds_prints_mean_and_spread(tmp_path, capsys):
    assert main(["compare", "digits", "--model", "cnn", "--attention", "none,se", "--seeds", "0,1", "--steps", "2",
                 "--out", str(tmp_path / "cmp"), *CNN]) == 0
    out = capsys.readouterr().out
    assert "accuracy (mean ± sd)" in out and "none" in out and " se " in out
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert sorted((r["label"], r["seed"]) for r in rows) == [("none", 0), ("none", 1), ("se", 0), ("se", 1)]


@pytest.mark.parametrize("argv, message", [
    (["train", "digits", "--model", "cnn", "--attention", "bahdanau"], "is not an attention a CNN block takes"),
    (["train", "translated-digits", "--task-option", "canvas=4"], "canvas=4 is impossible"),
    (["train", "digits", "--model", "ram", "--embed-dim", "8"], "a ram reads images and has no embed_dim"),
    (["compare", "digits", "--model", "cnn", "--attention", "se", "--seeds", "0,x"], "--seeds takes"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_predict_bad_index_and_a_model_without_attention(cnn_run, tmp_path, capsys):
    assert main(["predict", str(cnn_run), "400"]) == 2
    assert "index 400 is out of range; the test split has 359 images" in capsys.readouterr().err
    d = tmp_path / "mlp"
    assert main(["train", "digits", "--model", "mlp", "--steps", "1", "--out", str(d), "--json",
                 "--hidden-dim", "8"]) == 0
    capsys.readouterr()
    assert main(["predict", str(d), "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot draws attention; this run's mlp model has none" in capsys.readouterr().err
