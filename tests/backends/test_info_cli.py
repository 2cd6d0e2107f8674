"""``attnkit info``: every backend listed, with its verdict on a sample call."""

from __future__ import annotations

import json

from attnkit.backends import backend_names
from attnkit.cli import main


def test_info_lists_every_backend_and_auto_choice(capsys):
    assert main(["info", "--score", "additive", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    names = [b["name"] for b in rep["backends"]]
    assert names == backend_names()
    by = {b["name"]: b for b in rep["backends"]}
    assert any("not a dot product" in r for r in by["sdpa"]["reasons"])
    assert by["chunked"]["reasons"] == []
    assert "small call" in by["chunked"]["declined"]  # runnable, but auto prefers math at L = S = 128
    assert rep["call"]["auto"] == "math"
    assert main(["info", "--score", "additive", "--L", "2048", "--E", "128", "--json"]) == 0
    big = json.loads(capsys.readouterr().out)
    assert big["call"]["auto"] == "chunked"
    assert rep["environment"]["torch"]
    for b in rep["backends"]:
        assert b["available"] or b["unavailable_reason"]


def test_info_text_and_bad_sizes(capsys):
    assert main(["info", "--score", "scaled_dot", "--normalizer", "sparsemax"]) == 0
    out = capsys.readouterr().out
    assert "auto picks: math" in out and "normalizer 'sparsemax' is not softmax" in out
    assert main(["info", "--score", "dot", "--L", "0"]) == 2
    assert "--L, --S and --E must be >= 1" in capsys.readouterr().err
