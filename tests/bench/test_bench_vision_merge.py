"""benchmarks/bench_vision.py --merge: the glimpse trend over seeds, judged on the means and seed by seed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_vision.py"


def _bench():
    spec = importlib.util.spec_from_file_location("attnkit_bench_vision", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path: Path, seed: int, errors: dict[int, float], steps: int = 3000, **config) -> str:
    rows = [{"model": "ram", "seed": seed, "error": e, "steps": steps,
             "config": {"policy": "learned", "glimpses": g, "patch_size": 4, **config}} for g, e in errors.items()]
    # not a glimpse row, and its steps are no budget of the glimpse rows
    rows.append({"model": "mlp", "seed": seed, "error": 0.5, "steps": 9, "config": {"hidden_dim": 256}})
    path = tmp_path / f"seed{seed}.json"
    path.write_text(json.dumps({"translated": {"rows": rows}}))
    return str(path)


def test_merge_judges_the_means_and_each_seed(tmp_path, capsys):
    # seed 0 falls 0.10 > 0.04 > 0.03 > 0.02; seed 1 ties 6 -> 8 (0.05, 0.05), so only the means fall:
    # means 0.09, 0.045, 0.04, 0.035; sd of (0.10, 0.08) = 0.02 / sqrt(2)
    merged = _bench().merge_translated([_run(tmp_path, 0, {2: 0.10, 4: 0.04, 6: 0.03, 8: 0.02}),
                                        _run(tmp_path, 1, {2: 0.08, 4: 0.05, 6: 0.05, 8: 0.05})])
    assert merged["seeds"] == [0, 1] and merged["budget"] == 3000
    assert merged["summary"]["2"]["mean"] == pytest.approx(0.09)
    assert merged["summary"]["2"]["sd"] == pytest.approx(0.02 / 2 ** 0.5)
    assert merged["summary"]["8"]["errors"] == [0.02, 0.05]
    assert merged["targets"]["mean_error_falls"] is True
    assert merged["targets"]["falls_per_seed"] == {0: True, 1: False}
    # the best accuracy with at most 6 glimpses: 1 - 0.03 and 1 - 0.05
    assert merged["targets"]["best_accuracy_le_6_glimpses"] == pytest.approx({0: 0.97, 1: 0.95})
    assert "mean error falling 2 -> 4 -> 6 -> 8: met" in capsys.readouterr().out


def test_merge_reads_a_tie_of_the_means_as_missed(tmp_path):
    merged = _bench().merge_translated([_run(tmp_path, 0, {2: 0.10, 4: 0.04, 6: 0.03, 8: 0.03})])
    assert merged["targets"]["mean_error_falls"] is False
    assert merged["summary"]["6"]["sd"] == 0.0


def test_merge_refuses_mixed_configs_duplicates_and_gaps(tmp_path):
    bench = _bench()
    a = _run(tmp_path, 0, {2: 0.1, 4: 0.05})
    (tmp_path / "other").mkdir()
    b = _run(tmp_path / "other", 1, {2: 0.1, 4: 0.05}, patch_size=6)
    with pytest.raises(SystemExit, match="differ in more than glimpses and seed"):
        bench.merge_translated([a, b])
    with pytest.raises(SystemExit, match="a second run of 2 glimpses on seed 0; merge one file per seed"):
        bench.merge_translated([a, a])
    d = _run(tmp_path / "other", 1, {2: 0.1, 4: 0.05}, steps=2000)
    with pytest.raises(SystemExit, match="different budgets"):  # 3,000 steps beside 2,000
        bench.merge_translated([a, d])
    c = _run(tmp_path / "other", 1, {2: 0.1})
    with pytest.raises(SystemExit, match=r"no run for \(glimpses, seed\) \[\(4, 1\)\]"):
        bench.merge_translated([a, c])
