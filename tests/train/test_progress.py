"""The progress bar: what it shows on a terminal, and silence elsewhere."""

from __future__ import annotations

import io

from attnkit.train.progress import Progress, format_seconds


def test_format_seconds_by_hand():
    assert format_seconds(0) == "0:00"
    assert format_seconds(125) == "2:05"
    assert format_seconds(3725) == "1:02:05"


def test_bar_shows_loss_accuracy_throughput_and_eta():
    s = io.StringIO()
    p = Progress(100, enabled=True, stream=s)
    p.update(10, {"loss": 1.5, "acc": 0.25, "tokens": 1000.0})
    line = s.getvalue()
    assert "10/100" in line and "loss 1.500" in line and "acc 25.0%" in line and "tok/s" in line and "ETA" in line
    p.log("step 10: valid exact_match 0.5")
    p.close()
    assert "valid exact_match" in s.getvalue()


def test_silent_when_not_a_terminal():
    s = io.StringIO()  # isatty() is False, as in CI logs and pipes
    p = Progress(10, stream=s)
    p.update(1, {"loss": 1.0})
    p.log("hello")
    p.close()
    assert s.getvalue() == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_is_tqdm_on_a_terminal_and_log_lines_go_above_it():
    """Before: a hand-written bar of ``\\r`` writes; now tqdm draws it (issue 12, section 4)."""
    from tqdm import tqdm

    s = _Terminal()
    p = Progress(100, stream=s)  # enabled because the stream is a terminal
    assert isinstance(p.bar, tqdm) and p.enabled
    p.update(10, {"loss": 1.5, "tokens": 10.0})
    p.log("step 10: valid exact_match 0.5")
    p.close()
    out = s.getvalue()
    message = out.index("step 10: valid exact_match 0.5\n")
    assert "10/100  loss 1.500" in out[message:]  # the bar is drawn again under the line
    assert out.endswith("\n")  # close ends the bar's line


def test_a_time_budget_fills_the_bar_and_gives_the_eta():
    s = io.StringIO()
    p = Progress(None, minutes=2, enabled=True, stream=s)
    p.update(3, {"loss": 2.0})
    p.close()
    line = s.getvalue()
    assert "3  loss 2.000" in line and ("ETA 1:59" in line or "ETA 2:00" in line)
    assert "/" not in line.split("loss")[0]  # no step budget to show
