"""`attnkit explain`: the worked example, user vectors, JSON, and clean errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from attnkit.cli import main


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_default_is_the_cat_sat_on_the_mat(capsys):
    rc, out, _ = run_cli(capsys, "explain", "--json")
    assert rc == 0
    r = json.loads(out)
    assert r["tokens"] == ["The", "cat", "sat", "on", "the", "mat"]
    assert [round(w, 3) for w in r["weights"]] == [0.082, 0.166, 0.337, 0.166, 0.082, 0.166]
    assert [round(x, 1) for x in r["output"]] == [0.7, 0.5]
    assert r["raw_scores"] == [0.0, 1.0, 2.0, 1.0, 0.0, 1.0]  # q·k for q = sat = [1, 1]


def test_tables_show_every_step(capsys):
    rc, out, _ = run_cli(capsys, "explain")
    assert rc == 0
    for step in ("Step 1.", "Step 2.", "Step 3.", "Step 4.", "Step 5."):
        assert step in out
    assert "0.337" in out and "[0.670, 0.503]" in out


def test_user_tokens_vectors_and_scores(capsys):
    rc, out, _ = run_cli(capsys, "explain", "--tokens", "a", "b", "--vectors", "1,0;0,1", "--query", "2,0",
                         "--score", "dot", "--json")
    r = json.loads(out)
    assert r["raw_scores"] == [2.0, 0.0]
    assert abs(r["weights"][0] - 0.8808) < 1e-4  # softmax([2, 0])
    rc, out, _ = run_cli(capsys, "explain", "--score", "general", "--weight", "2,0;0,1", "--json")
    assert json.loads(out)["raw_scores"] == [0.0, 1.0, 3.0, 2.0, 0.0, 2.0]  # q W kᵀ, q W = [2, 1]
    rc, out, _ = run_cli(capsys, "explain", "--score", "cosine", "--beta", "2", "--json")
    r = json.loads(out)
    assert abs(r["raw_scores"][2] - 2.0) < 1e-9  # cos(sat, sat) * β
    rc, out, _ = run_cli(capsys, "explain", "--compare")
    assert "How each score changes the weights" in out and "additive" in out


def test_json_file(tmp_path, capsys):
    f = tmp_path / "x.json"
    f.write_text(json.dumps({"tokens": ["x", "y"], "vectors": [[1, 0], [0, 1]], "values": [[1], [3]],
                             "query": "x", "score": "dot"}))
    rc, out, _ = run_cli(capsys, "explain", "--file", str(f), "--json")
    r = json.loads(out)
    e = 2.718281828459045
    assert abs(r["output"][0] - (e * 1 + 1 * 3) / (e + 1)) < 1e-9


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--query", "dog"], "--query 'dog' is neither"),
        (["--tokens", "a", "b", "--vectors", "1,0"], "2 tokens but 1 vectors"),
        (["--vectors", "1,x"], "--vectors must be numbers"),
        (["--tokens", "a"], "--tokens needs --vectors"),
        (["--query", "1,2,3"], "query has 3 numbers but the keys have 2"),
        (["--score", "general", "--weight", "1,0,0;0,1,0"], "general score weight has shape (2, 3)"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    rc, out, err = run_cli(capsys, "explain", *argv)
    assert rc == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_module_entry_point():
    p = subprocess.run([sys.executable, "-m", "attnkit", "explain", "--query", "dog"], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.startswith("attnkit explain: error:")
