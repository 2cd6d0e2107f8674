"""attnkit.bench.timing: summaries and call orders worked out by hand (no wall-clock time asserted)."""

from __future__ import annotations

import doctest
import importlib

import pytest

from attnkit.bench.timing import Summary, alternation, time_calls, time_paired


class FakeClock:
    """A clock that only moves when a fake workload says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def workload(clock: FakeClock, log: list[str], name: str, durations: list[float]):
    """A call that logs its name and advances ``clock`` by the next of ``durations`` (cycling)."""
    calls = iter(durations * 100)

    def fn() -> None:
        log.append(name)
        clock.now += next(calls)

    return fn


def test_summary_of_one_to_ten():
    # inclusive percentiles: position q * (n - 1); p10 at 0.9 -> 1 + 0.9 * (2 - 1) = 1.9,
    # p90 at 8.1 -> 9 + 0.1 * (10 - 9) = 9.1, median between 5 and 6
    s = Summary.of([float(x) for x in range(1, 11)])
    assert s.median == 5.5
    assert s.p10 == pytest.approx(1.9)
    assert s.p90 == pytest.approx(9.1)
    assert s.n == 10


def test_summary_sorts_and_interpolates_three_samples():
    # sorted (1, 2, 3): p10 at 0.2 -> 1.2, p90 at 1.8 -> 2.8; samples keep their order
    s = Summary.of([3.0, 1.0, 2.0])
    assert (s.median, s.p10, s.p90) == (2.0, pytest.approx(1.2), pytest.approx(2.8))
    assert s.samples == (3.0, 1.0, 2.0)


def test_summary_of_an_even_count_with_an_outlier():
    # (1, 2, 4, 100): median (2 + 4) / 2 = 3; p10 at 0.3 -> 1.3; p90 at 2.7 -> 4 + 0.7 * 96 = 71.2
    s = Summary.of([100.0, 2.0, 1.0, 4.0])
    assert s.median == 3.0
    assert s.p10 == pytest.approx(1.3)
    assert s.p90 == pytest.approx(71.2)


def test_single_sample_is_its_own_summary():
    s = Summary.of([0.25])
    assert (s.median, s.p10, s.p90, s.n) == (0.25, 0.25, 0.25, 1)


def test_scaled_converts_units():
    s = Summary.of([0.001, 0.002, 0.003]).scaled(1e3)
    assert s.median == pytest.approx(2.0)
    assert s.p10 == pytest.approx(1.2)
    assert s.samples == pytest.approx((1.0, 2.0, 3.0))


def test_empty_samples_are_refused():
    with pytest.raises(ValueError, match="samples must hold at least one"):
        Summary.of([])


def test_time_calls_warms_up_then_times_each_call():
    clock, log = FakeClock(), []
    fn = workload(clock, log, "f", [5.0, 1.0, 2.0, 3.0])  # warm-up takes the 5
    s = time_calls(fn, warmup=1, repeats=3, clock=clock)
    assert log == ["f"] * 4
    assert s.samples == (1.0, 2.0, 3.0)
    assert (s.median, s.p10, s.p90) == (2.0, pytest.approx(1.2), pytest.approx(2.8))


def test_alternation_order():
    assert list(alternation(5)) == [(0, 1), (1, 0), (0, 1), (1, 0), (0, 1)]
    assert list(alternation(0)) == []


def test_time_paired_alternates_ours_and_peer():
    clock, log = FakeClock(), []
    ours = workload(clock, log, "ours", [1.0, 2.0, 3.0, 4.0])
    peer = workload(clock, log, "peer", [10.0, 20.0, 30.0, 40.0])
    a, b = time_paired(ours, peer, warmup=1, repeats=3, clock=clock)
    # warm-up: ours, peer; then repeat 0: ours, peer; 1: peer, ours; 2: ours, peer
    assert log == ["ours", "peer", "ours", "peer", "peer", "ours", "ours", "peer"]
    assert a.samples == (2.0, 3.0, 4.0)  # the warm-up took 1.0
    assert b.samples == (20.0, 30.0, 40.0)
    assert b.median / a.median == pytest.approx(10.0)


@pytest.mark.parametrize("warmup, repeats", [(0, 0), (-1, 3)])
def test_bad_counts_name_the_argument(warmup, repeats):
    with pytest.raises(ValueError, match="repeats must be >= 1 and warmup >= 0"):
        time_calls(lambda: None, warmup=warmup, repeats=repeats)
    with pytest.raises(ValueError, match="repeats must be >= 1 and warmup >= 0"):
        time_paired(lambda: None, lambda: None, warmup=warmup, repeats=repeats)


@pytest.mark.parametrize("name", ["attnkit.bench", "attnkit.bench.timing"])
def test_docstring_examples(name):
    res = doctest.testmod(importlib.import_module(name))
    assert res.attempted > 0 and res.failed == 0
