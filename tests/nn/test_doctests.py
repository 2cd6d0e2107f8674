"""The examples in the attnkit.nn docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["attnkit.nn.additive", "attnkit.nn.multihead", "attnkit.nn.registry", "attnkit.nn.torch_compat"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, extraglobs={"torch": importlib.import_module("torch")}, optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0
