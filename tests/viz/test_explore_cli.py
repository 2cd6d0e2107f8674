"""``attnkit explore RUN_DIR``: the committed seq2seq and Transformer runs and small GPT/BERT runs give a page
whose weights are the model's own (parity with predict's alignment and the models' attention maps), and every
bad input is one line naming the fix, exit 2."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from attnkit.cli import main
from attnkit.data import get_task
from attnkit.models import build_model, model_config_for_task
from attnkit.train import load_run, train
from attnkit.viz.explore import decode_weights

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SEQ2SEQ, TRANSFORMER = FIXTURES / "run-361c5ec-seq2seq", FIXTURES / "run-361c5ec-transformer"


def _payload(path: Path) -> dict:
    m = re.search(r'id="attnkit-data">(.*?)</script>', path.read_text(encoding="utf-8"), re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def _weights(layer: dict) -> np.ndarray:
    codes = np.frombuffer(base64.b64decode(layer["w"]), dtype=np.uint8)
    return decode_weights(codes).reshape(layer["B"], layer["H"], layer["L"], layer["S"])


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp, out = tmp_path_factory.mktemp("explore"), {}
    for task_name, model_name in (("shakespeare", "gpt"), ("shakespeare-genre", "bert")):
        task = get_task(task_name, plays=["hamlet"], block_size=32, eval_tokens=512)
        cfg = model_config_for_task(model_name, task, num_layers=2, num_heads=2, dim=16)
        out[model_name] = str(tmp / model_name)
        train(task, build_model(cfg), steps=2, eval_every=2, out_dir=out[model_name], progress=False,
              final_eval=False)
    return out


def test_seq2seq_alignment_is_predicts(tmp_path, capsys, one_thread) -> None:
    out = tmp_path / "r.html"
    assert main(["explore", str(SEQ2SEQ), "--text", "abcde", "-o", str(out), "--json"]) == 0
    assert _last_json(capsys)["layers"] == 1
    p = _payload(out)
    (layer,) = p["layers"]
    assert (layer["name"], layer["query"], layer["key"]) == ("alignment", "output", "input")
    expected = [json.loads(x) for x in (SEQ2SEQ / "predict-beam1.expected.jsonl").read_text().splitlines()]
    want = next(e for e in expected if e["input"] == "abcde")
    assert p["tokens"]["input"] == [want["input_tokens"]]
    assert p["tokens"]["output"] == [want["output_tokens"]]  # predict's rows: the output, then </s>
    w = _weights(layer)[0, 0, : len(want["output_tokens"]), :5]
    np.testing.assert_allclose(w, np.array(want["alignment"]), rtol=0.03, atol=1e-4)  # the page's 1-byte code
    sal = p["saliency"]
    assert sal["over"] == "input" and sal["R"] == len(want["output_tokens"])


def test_transformer_layers_are_the_models_maps(tmp_path, one_thread) -> None:
    out = tmp_path / "r.html"
    assert main(["explore", str(TRANSFORMER), "--text", "abcde", "--text", "tpnbehjb", "-o", str(out)]) == 0
    p = _payload(out)
    names = [x["name"] for x in p["layers"]]
    assert names == ["encoder 0", "encoder 1", "decoder 0 self", "decoder 0 cross", "decoder 1 self",
                     "decoder 1 cross"]
    task, model, _ = load_run(TRANSFORMER)
    (toks, _), _ = task.predict(model, ["abcde", "tpnbehjb"])
    src = torch.tensor([task.encode_source("abcde")])
    maps = model.cross_attention_maps(src, torch.tensor([5]), [task.tgt_vocab.stoi[t] for t in toks])
    for d in range(2):
        layer = p["layers"][3 + 2 * d]
        w = _weights(layer)[0, :, : len(toks) + 1, :5]
        np.testing.assert_allclose(w, maps[d].numpy(), rtol=0.03, atol=1e-4)
        assert layer["values"] is not None and layer["lse"] is not None
    assert p["items"] == ["abcde → edcba", "tpnbehjb → bjhebnpt"]


def test_layers_and_heads_selection(tmp_path, capsys, one_thread) -> None:
    out = tmp_path / "r.html"
    assert main(["explore", str(TRANSFORMER), "--text", "abc", "--layers", "3,-1", "--heads", "1", "-o", str(out),
                 "--json"]) == 0
    assert _last_json(capsys)["heads"] == [1, 1]
    p = _payload(out)
    assert [x["name"] for x in p["layers"]] == ["decoder 0 cross", "decoder 1 cross"]
    assert p["layers"][0]["heads"] == ["head 1"]


def test_gpt_and_bert_runs(lm_runs, tmp_path, one_thread) -> None:
    task, model, _ = load_run(lm_runs["gpt"])
    out = tmp_path / "g.html"
    assert main(["explore", lm_runs["gpt"], "--text", "HAMLET: to be", "-o", str(out)]) == 0
    p = _payload(out)
    maps = model.attention_maps(torch.tensor([task.encode_prompt("HAMLET: to be")]))
    assert len(p["layers"]) == len(maps) == 2
    np.testing.assert_allclose(_weights(p["layers"][1]), maps[1].numpy(), rtol=0.03, atol=1e-4)
    assert p["saliency"]["R"] == p["saliency"]["N"] == 13  # one row per position: its next-character prediction
    sal = np.frombuffer(base64.b64decode(p["saliency"]["data"]), dtype="<f4").reshape(1, 13, 13)[0]
    assert np.all(np.triu(sal, k=1) == 0) and np.all(np.diag(sal) != 0)  # causal: row t sees tokens <= t only
    out = tmp_path / "b.html"
    assert main(["explore", lm_runs["bert"], "-o", str(out)]) == 0  # default text: the test split's start
    p = _payload(out)
    assert p["saliency"]["R"] == 1 and p["saliency"]["rows"][0][0].startswith("class ")


@pytest.mark.parametrize("argv, match", [
    (["explore", "/nonexistent/run"], "is not a run directory"),
    (["explore"], "give one source"),
    (["explore", str(SEQ2SEQ), "--hf", "x"], "give one source"),
    (["explore", str(TRANSFORMER), "--layers", "9"], r"--layers 9: the model has 6 attention layers"),
    (["explore", str(TRANSFORMER), "--heads", "4"], r"--heads 4: the model has 4 heads"),
    (["explore", str(TRANSFORMER), "--layers", "a"], "--layers takes numbers"),
    (["explore", str(SEQ2SEQ), "--text", "ABC!"], "tokens the model never saw"),
    (["explore", str(SEQ2SEQ), "--top-k", "0"], "--top-k must be >= 1"),
    (["explore", str(SEQ2SEQ), "--text", " "], "--text is empty"),
])
def test_bad_input_is_one_line_exit_2(argv, match, tmp_path, capsys, one_thread) -> None:
    assert main([*argv, "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err
    assert not (tmp_path / "r.html").exists()


def test_text_longer_than_the_context(lm_runs, tmp_path, capsys, one_thread) -> None:
    assert main(["explore", lm_runs["gpt"], "--text", "x" * 40, "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "40 characters but the model's context (block_size) is 32" in err


def test_run_directory_without_checkpoint(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["explore", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_model_without_attention_calls_is_one_clear_error() -> None:
    from attnkit.cli._common import CliError
    from attnkit.cli._explore_runs import _teacher_forced

    emb, head = torch.nn.Embedding(5, 4), torch.nn.Linear(4, 5)  # an embedding and a linear layer: no attention
    x = torch.tensor([[1, 2, 3]])
    with pytest.raises(CliError, match="makes no attention call .* nothing to explore"):
        _teacher_forced(head, emb, lambda: head(emb(x))[0], torch.tensor([1, 2, 3]))
