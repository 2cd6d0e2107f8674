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
