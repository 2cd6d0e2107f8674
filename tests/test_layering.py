"""The import order of attnkit's layers (docs/ARCHITECTURE.md), checked on the AST.

A module may import from its own package and from packages of a strictly lower
layer; everything else is a violation. Imports of attnkit modules sit at the top
of their file (module level), except in ``cli/``, which imports lazily to keep
``attnkit --help`` fast. Both rules are checked on every file under src/attnkit.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "attnkit"

#: package -> layer; higher layers may import lower ones, never the reverse.
#: Packages on one layer do not import each other.
LAYERS: dict[str, int] = {
    "core": 0,
    "backends": 1,
    "functional": 2,
    "distributed": 3,
    "nn": 4,
    "data": 5,
    "viz": 5,
    "models": 6,
    "integrations": 7,
    "presets": 7,
    "train": 8,
    "bench": 8,
    "cli": 9,
    # the package's own entry points sit on top of everything
    "__init__": 10,
    "__main__": 10,
}


#: (importer, imported) pairs refused although the layers allow them: modules that own
#: parameters reach the kernels through functional.attention() only (one dispatch path).
THROUGH_FUNCTIONAL: set[tuple[str, str]] = {
    ("nn", "backends"),
    ("data", "backends"),
    ("viz", "backends"),
    ("models", "backends"),
    ("presets", "backends"),
    ("integrations", "backends"),
    ("train", "backends"),
}


def _package(parts: tuple[str, ...]) -> str:
    """The layer name of a module given its parts under attnkit/ (("nn", "multihead") -> "nn")."""
    head = parts[0]
    return head[:-3] if head.endswith(".py") else head


def _resolve(module_parts: tuple[str, ...], node: ast.ImportFrom) -> list[tuple[str, ...]]:
    """The attnkit modules (as parts under attnkit/) an ImportFrom node names; [] for third-party ones."""
    if node.level == 0:
        name = node.module or ""
        if name != "attnkit" and not name.startswith("attnkit."):
            return []
        base = tuple(name.split(".")[1:])
    else:
        pkg = module_parts[:-1]  # the module's package, under attnkit/
        if node.level - 1 > len(pkg):
            return []
        base = pkg[: len(pkg) - (node.level - 1)] + tuple((node.module or "").split(".") if node.module else ())
    if node.module is None or (node.level == 0 and not base):
        # "from .. import nn, functional" / "from . import base": each name is a module under base
        return [base + (alias.name,) for alias in node.names]
    return [base]


def _imports(path: pathlib.Path) -> list[tuple[tuple[str, ...], int, bool]]:
    """(target parts, line, at module level) for every attnkit import in ``path``."""
    parts = path.relative_to(SRC).parts
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(n) for n in tree.body}
    # imports under a module-level ``if TYPE_CHECKING:`` or ``try:`` still count as module level
    for n in tree.body:
        if isinstance(n, (ast.If, ast.Try)):
            top.update(id(c) for c in ast.walk(n))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for target in _resolve(parts, node):
                out.append((target, node.lineno, id(node) in top))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "attnkit" or alias.name.startswith("attnkit."):
                    out.append((tuple(alias.name.split(".")[1:]) or ("__init__",), node.lineno, id(node) in top))
    return out


def _violations() -> tuple[list[str], list[str]]:
    order, late = [], []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).parts
        src_pkg = _package(parts)
        src_layer = LAYERS.get(src_pkg)
        for target, line, top_level in _imports(path):
            where = f"{path.relative_to(SRC.parent)}:{line}"
            if not target:
                continue
            dst_pkg = _package(target)
            if src_layer is None:
                order.append(f"{where}: package {src_pkg!r} has no layer in LAYERS")
                continue
            dst_layer = LAYERS.get(dst_pkg)
            if dst_layer is None:
                order.append(f"{where}: imports {'.'.join(target)!r}, whose package has no layer")
            elif dst_pkg != src_pkg and dst_layer >= src_layer:
                order.append(f"{where}: {src_pkg} (layer {src_layer}) imports {'.'.join(target)} (layer {dst_layer})")
            elif (src_pkg, dst_pkg) in THROUGH_FUNCTIONAL:
                order.append(f"{where}: {src_pkg} imports {'.'.join(target)}; go through attnkit.functional")
            if not top_level and src_pkg != "cli":
                late.append(f"{where}: function-level import of attnkit.{'.'.join(target)}")
    return order, late


def test_every_package_has_a_layer():
    pkgs = {_package(p.relative_to(SRC).parts) for p in SRC.rglob("*.py")}
    assert pkgs <= set(LAYERS), f"add these to LAYERS (and docs/ARCHITECTURE.md): {sorted(pkgs - set(LAYERS))}"


def test_imports_go_down_the_layers():
    order, _ = _violations()
    assert not order, "imports against the layer order:\n" + "\n".join(order)


def test_no_function_level_attnkit_imports_outside_cli():
    _, late = _violations()
    assert not late, "move these imports to the top of their file:\n" + "\n".join(late)


#: the most lines one source file may have (nanoGPT's model.py: one readable module per idea)
MAX_LINES = 600


def test_no_source_file_over_max_lines():
    long = {str(p.relative_to(SRC.parent)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these files (over {MAX_LINES} lines): {long}"


def test_sdpa_is_called_from_backends_only():
    """torch's scaled_dot_product_attention is one backend: every other layer goes through attention().

    ``bench/`` is the exception by purpose: SDPA called directly is the peer it times us against."""
    callers = []
    for path in SRC.rglob("*.py"):
        if _package(path.relative_to(SRC).parts) in ("backends", "bench"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
            if name == "scaled_dot_product_attention":
                callers.append(f"{path.relative_to(SRC.parent)}:{node.lineno}")
    assert not callers, "call attnkit.functional.attention() instead of SDPA here:\n" + "\n".join(callers)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from ..nn import create\n", [("nn",)]),
        ("from . import base\n", [("models", "base")]),
        ("from .. import nn, functional\n", [("nn",), ("functional",)]),
        ("from attnkit.core.spec import AttentionSpec\n", [("core", "spec")]),
        ("import torch\nfrom torch import nn\n", []),
    ],
)
def test_resolver_reads_relative_and_absolute_imports(source, expected):
    node_list = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)]
    got = [t for n in node_list for t in _resolve(("models", "seq2seq.py"), n)]
    assert got == expected
