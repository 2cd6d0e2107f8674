"""Run directories written before the restructure (commit 361c5ec) still load and predict the same.

``tests/fixtures/run-361c5ec-*`` were trained with ``attnkit train reverse`` at that commit
(``--hidden-dim 32 --embed-dim 16 --steps 20`` for the RNN, ``--model transformer --hidden-dim 32
--steps 200``), and ``predict-beam{1,3}.expected.jsonl`` hold what ``attnkit predict --json`` printed
then. Outputs must match exactly; alignments to the 4 decimals the CLI prints, within one unit.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
RUNS = sorted(p for p in FIXTURES.glob("run-361c5ec-*") if p.is_dir())


def _predict(run: pathlib.Path, beam: int) -> list[dict]:
    out = subprocess.run(
        # --length-penalty 1: the beam's default when the expected files were written (now 0, the raw log p)
        [sys.executable, "-m", "attnkit", "predict", str(run), "abcde", "tpnbehjb", "--beam", str(beam),
         "--length-penalty", "1", "--json", "--no-grid"],
        capture_output=True, text=True, check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_fixtures_exist():
    assert {p.name for p in RUNS} == {"run-361c5ec-seq2seq", "run-361c5ec-transformer"}


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("run", RUNS, ids=lambda p: p.name)
def test_old_run_predicts_what_it_predicted(run, beam):
    expected = [json.loads(x) for x in (run / f"predict-beam{beam}.expected.jsonl").read_text().splitlines() if x]
    got = _predict(run, beam)
    assert [g["output_tokens"] for g in got] == [e["output_tokens"] for e in expected]
    for g, e in zip(got, expected):
        assert len(g["alignment"]) == len(e["alignment"])
        for gr, er in zip(g["alignment"], e["alignment"]):
            assert gr == pytest.approx(er, abs=1.5e-4)


@pytest.mark.parametrize("run", RUNS, ids=lambda p: p.name)
def test_old_run_resumes(run, tmp_path):
    """The last checkpoint (weights, optimizer, RNG state) of an old run continues training."""
    from attnkit.train import resume_run

    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    meta = json.loads((copy / "last.json").read_text())
    steps = meta["train"]["state"]["step"]
    result = resume_run(copy, steps=steps + 2)
    assert result["steps"] == steps + 2
