"""Without chromium or playwright the browser tests skip with a reason that says how to enable them."""

from __future__ import annotations

import importlib.util

from tests.browser import conftest


def test_reason_names_the_install_commands(monkeypatch) -> None:
    monkeypatch.setattr(conftest, "chromium_path", lambda: None)
    why = conftest.browser_missing()
    if importlib.util.find_spec("playwright") is not None:
        assert why.startswith("no chromium binary")
    assert "apt-get install chromium" in why and "playwright==1.65.2" in why and "make install" in why
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "playwright" else real(name))
    assert conftest.browser_missing().startswith("the playwright package is not installed")


def test_a_chromium_named_by_the_environment_is_used(monkeypatch, tmp_path) -> None:
    exe = tmp_path / "chromium"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("ATTNKIT_CHROMIUM", str(exe))
    assert conftest.chromium_path() == str(exe)
