"""``attnkit bench --quick --json``: one JSON object per row with the agreed fields (times never asserted)."""

from __future__ import annotations

import json

from attnkit.cli import main

FIELDS = {"suite", "impl", "peer", "shape", "mode", "ms_median", "peak_mb", "peer_ms_median", "peer_peak_mb"}


def test_bench_quick_json_rows(capsys, tmp_path):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--quick", "--json", "--suite", "dot,additive", "--peers", "torch_sdpa,naive_eager",
               "--mode", "fwd+bwd", "--out", str(out)])
    assert rc == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [(r["suite"], r["impl"], r["peer"]) for r in rows] == [
        ("dot", "attnkit", "torch_sdpa"), ("additive", "attnkit_additive", "naive_eager")]
    for r in rows:
        assert FIELDS <= set(r)
        assert r["mode"] == "fwd+bwd" and r["repeats"] == 3
        assert r["ms_median"] > 0 and r["peer_ms_median"] > 0
        assert r["ms_p10"] <= r["ms_median"] <= r["ms_p90"]
    assert json.loads(out.read_text())["rows"] == rows


def test_bench_rejects_bad_arguments(capsys):
    assert main(["bench", "--quick", "--mode", "backward"]) == 2
    assert "--mode must list fwd and/or fwd+bwd" in capsys.readouterr().err
    assert main(["bench", "--quick", "--suite", "flash"]) == 2
    assert "unknown suite 'flash'" in capsys.readouterr().err


def test_bench_paired_rows(capsys):
    rc = main(["bench", "--quick", "--json", "--paired", "--no-memory", "--suite", "dot", "--mode", "fwd"])
    assert rc == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [(r["impl"], r["peer"], r["paired"], r["repeats"]) for r in rows] == [("attnkit", "torch_sdpa", True, 3)]
    assert rows[0]["peak_mb"] is None and rows[0]["speedup"] > 0


def test_bench_table(capsys):
    argv = ["bench", "--quick", "--no-memory", "--suite", "additive", "--peers", "naive_eager", "--mode", "fwd"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["suite", "shape", "mode"]
    assert lines[2].startswith("additive  B=2 H=1 N=32 E=16 D=16")
    assert lines[-1].startswith("x faster = peer ms / ours")
