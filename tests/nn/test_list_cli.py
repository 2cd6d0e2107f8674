"""`attnkit list`: the table of mechanisms, papers, formulas and backends."""

from __future__ import annotations

import json

import attnkit
from attnkit.cli import main


def test_list_table_names_every_mechanism(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in attnkit.list_mechanisms():
        assert name in out
    assert "arXiv:1409.0473" in out and "vᵀ tanh" in out


def test_list_json_backends_come_from_the_backends(capsys):
    assert main(["list", "--json", "--kind", "sequence"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(attnkit.list_mechanisms(kind="sequence"))
    for r in rows.values():
        assert r["attention_calls"] >= 1
        assert "math" in r["backends"] and "reference" in r["backends"]
    # torch SDPA runs dot products only: it must refuse the additive score, with its reason
    assert "sdpa" not in rows["bahdanau"]["backends"]
    assert any("not a dot product" in why for why in rows["bahdanau"]["refusals"].get("sdpa", ["not a dot product"]))
    # sampling is not softmax: fused softmax kernels refuse hard attention
    assert rows["hard"]["backends"] == ["math", "reference"] or "sdpa" not in rows["hard"]["backends"]


def test_list_vision_has_no_attention_call(capsys):
    assert main(["list", "--json", "--kind", "vision"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == {"squeeze-excite", "cbam"}
    assert all(r["backends"] == [] and r["attention_calls"] == 0 for r in rows)


def test_list_aliases_and_reasons(capsys):
    assert main(["list", "--aliases", "--reasons"]) == 0
    out = capsys.readouterr().out
    assert "additive" in out and "refuses" in out
