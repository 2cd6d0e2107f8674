"""The README's snippets for attention() with a score object and for the attnkit.nn layers
run as printed: every name they use is defined in the snippet itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippet(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"expected one README python block containing {marker!r}, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("marker", ["scores.Additive(", "TorchMultiheadAttention(512"])
def test_snippet_runs_on_its_own(marker):
    torch.manual_seed(0)
    ns: dict = {}
    exec(compile(_snippet(marker), f"README.md[{marker}]", "exec"), ns)  # a fresh namespace: nothing predefined


def test_additive_snippet_shapes():
    ns: dict = {}
    exec(compile(_snippet("scores.Additive("), "README.md", "exec"), ns)
    B, L, S, E = ns["B"], ns["L"], ns["S"], ns["E"]
    assert ns["ctx"].shape == (B, L, E) and ns["w"].shape == (B, L, S)
