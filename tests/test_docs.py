"""The API site (``make docs``: MkDocs + mkdocstrings): a page per package, tables read from the registries,
the pictures it shows present, and (slow) a strict build with no warning."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import attnkit

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _hooks():
    spec = importlib.util.spec_from_file_location("attnkit_docs_hooks", DOCS / "hooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _nav_pages() -> list[str]:
    return re.findall(r":\s*([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)


def test_every_package_has_an_api_page_and_every_nav_page_exists():
    pages = _nav_pages()
    for page in pages:
        assert (DOCS / page).is_file(), page
    packages = sorted(p.parent.name for p in (ROOT / "src" / "attnkit").glob("*/__init__.py"))
    for pkg in packages:
        page = DOCS / "api" / f"{pkg}.md"
        assert f"api/{pkg}.md" in pages and f"::: attnkit.{pkg}" in page.read_text(), pkg
    assert {"index.md", "mechanisms.md", "pictures.md"} <= set(pages)


def test_the_pictures_the_pages_show_are_there():
    for page in [DOCS / "pictures.md", DOCS / "index.md", ROOT / "README.md"]:
        for img in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page.read_text()):
            assert (page.parent / img).is_file(), (page.name, img)


def test_the_mechanisms_page_is_filled_from_the_registry():
    hooks = _hooks()
    page = (DOCS / "mechanisms.md").read_text()
    assert hooks.MECHANISMS_MARKER in page and hooks.ATTENTION_MARKER in page
    out = hooks.on_page_markdown(page)
    assert hooks.MECHANISMS_MARKER not in out and hooks.ATTENTION_MARKER not in out
    rows = [ln for ln in out.splitlines() if ln.startswith("| `")]
    names = [re.match(r"\| `([^`]+)`", ln).group(1) for ln in rows]
    assert set(attnkit.list_mechanisms()) <= set(names)
    bahdanau = next(ln for ln in rows if ln.startswith("| `bahdanau`"))
    assert "arXiv:1409.0473" in bahdanau and "tanh" in bahdanau


def test_sphinx_roles_render_as_code():
    hooks = _hooks()
    html = ("see :func:<code>attnkit.functional.attention</code> and :class:<code>~attnkit.core.optional.MissingExtra"
            "</code>, :mod:<code>attnkit.viz.style</code>")
    assert hooks.on_page_content(html) == ("see <code>attnkit.functional.attention</code> and "
                                           "<code>MissingExtra</code>, <code>attnkit.viz.style</code>")


def test_makefile_and_ci_build_the_site_strictly():
    make = (ROOT / "Makefile").read_text()
    assert "mkdocs==1.6.1 mkdocstrings==1.0.8 mkdocstrings-python==2.0.11" in make
    assert re.search(r"^docs: .*\n\t\$\(BIN\)/mkdocs build --strict$", make, re.M)
    assert "make docs" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_strict_build_has_no_warning(tmp_path):
    """The whole site, as ``make docs`` builds it (15-60 s)."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install 'attnkit[docs]')")
    r = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "WARNING" not in r.stderr, r.stderr[-3000:]
    html = (tmp_path / "site" / "api" / "viz" / "index.html").read_text()
    assert "attnkit.viz.style" in html and ":func:" not in html


def test_doctests_in_docstrings_are_fenced_as_python_sessions():
    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location("attnkit_griffe_doctest", DOCS / "griffe_doctest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    prompt = ">" * 3
    text = f"Say:\n\n{prompt} 1 + 1\n2\n\nDone.\n\n    {prompt} indented: a literal block already\n"
    assert mod.fence_doctests(text) == (f"Say:\n\n```pycon\n{prompt} 1 + 1\n2\n```\n\nDone.\n\n"
                                        f"    {prompt} indented: a literal block already\n")


def test_readme_names_the_latest_demo_run_not_a_glob():
    """Before: ``attnkit predict runs/demo-*/ ...`` named every demo run once two existed."""
    readme = (ROOT / "README.md").read_text()
    assert "runs/demo-*" not in readme and "attnkit predict runs/demo-latest" in readme
    for cmd in ("attnkit plot", "attnkit tasks", "make docs"):
        assert cmd in readme, cmd
