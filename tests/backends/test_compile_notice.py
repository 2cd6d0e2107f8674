"""The first torch.compile of the additive tiles (about 10 s) is announced once per process:
at INFO on the ``attnkit.compile`` logger, and by the CLI as one line on stderr."""

from __future__ import annotations

import logging

import pytest
import torch

from attnkit.backends import additive_tiles, chunked_attention
from attnkit.backends.additive_tiles import COMPILE_NOTICE, _Compiled
from attnkit.cli import main
from attnkit.functional import build_spec


@pytest.fixture
def fresh_compiler(monkeypatch: pytest.MonkeyPatch) -> _Compiled:
    """A process state that has compiled nothing yet, with torch.compile as the identity (the real
    compilation takes seconds; what is tested is the notice around it)."""
    fresh = _Compiled()
    monkeypatch.setattr(additive_tiles, "COMPILED", fresh)
    monkeypatch.setattr(additive_tiles.torch, "compile", lambda fn, **kw: fn)
    return fresh


def _additive_call() -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 6, 4, generator=g) for _ in range(3))
    p = {"w_q": torch.randn(8, 4, generator=g), "w_k": torch.randn(8, 4, generator=g), "v": torch.randn(8, generator=g)}
    chunked_attention(build_spec(q, k, v, score="additive", score_params=p), compile=True)


def test_first_compiled_call_logs_once_at_info(fresh_compiler: _Compiled, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="attnkit"):
        _additive_call()
        _additive_call()  # the same process: no second notice
    notices = [r for r in caplog.records if r.getMessage() == COMPILE_NOTICE]
    assert len(notices) == 1
    assert notices[0].levelno == logging.INFO and notices[0].name == "attnkit.compile"


def test_eager_tiles_say_nothing(fresh_compiler: _Compiled, caplog: pytest.LogCaptureFixture) -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 6, 4, generator=g) for _ in range(3))
    p = {"w_q": torch.randn(8, 4, generator=g), "w_k": torch.randn(8, 4, generator=g), "v": torch.randn(8, generator=g)}
    with caplog.at_level(logging.INFO, logger="attnkit"):
        chunked_attention(build_spec(q, k, v, score="additive", score_params=p), compile=False)
    assert not [r for r in caplog.records if r.name == "attnkit.compile"]


def test_cli_prints_the_notice_on_one_stderr_line_once(fresh_compiler: _Compiled,
                                                       capsys: pytest.CaptureFixture) -> None:
    assert main(["list"]) == 0
    assert main(["list"]) == 0  # a second command in the process installs no second printer
    capsys.readouterr()
    _additive_call()
    _additive_call()
    err = capsys.readouterr().err
    assert err == f"attnkit: {COMPILE_NOTICE}\n"
