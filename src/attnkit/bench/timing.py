"""The timing primitive of every attnkit benchmark: warm-up, repeats, median and p10/p90.

The protocol of attnkit's benchmarks: call the function ``warmup`` times untimed (compilation,
lazy initialisation, allocator warm-up), then time ``repeats`` calls one by one with
``time.perf_counter`` and summarise them by their median and their 10th/90th percentiles.
Percentiles interpolate linearly between order statistics (``statistics.quantiles(...,
method="inclusive")``, numpy's default): for n sorted samples x_0..x_{n-1},

    p(q) = x_j + (x_{j+1} - x_j) * f,    with  j + f = q * (n - 1)

so p10/p90 always lie between the smallest and the largest sample.

Paired mode times our implementation and its peer in one process, alternating them
repeat by repeat (A B, B A, A B, ...) so machine load and cache state hit both alike;
:func:`alternation` gives that order.

    >>> s = Summary.of([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    >>> s.median, round(s.p10, 6), round(s.p90, 6)
    (5.5, 1.9, 9.1)
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

__all__ = ["Summary", "alternation", "time_calls", "time_paired"]

#: a monotonic clock in seconds (``time.perf_counter``); tests pass a fake one.
Clock = Callable[[], float]


@dataclass(frozen=True)
class Summary:
    """Median and p10/p90 of timing samples, in the samples' unit (seconds unless scaled).

    Build one with :meth:`Summary.of`; :meth:`scaled` converts units (``s.scaled(1e3)``: ms).
    """

    median: float
    p10: float
    p90: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        """Summarise ``samples`` (any order; at least one). One sample is its own median and p10/p90."""
        xs = sorted(float(x) for x in samples)
        if not xs:
            raise ValueError("samples must hold at least one timing, got an empty sequence")
        q = statistics.quantiles(xs, n=10, method="inclusive") if len(xs) > 1 else [xs[0]] * 9
        return cls(median=statistics.median(xs), p10=q[0], p90=q[-1], samples=tuple(samples))

    @property
    def n(self) -> int:
        """How many samples were summarised."""
        return len(self.samples)

    def scaled(self, factor: float) -> Summary:
        """The same summary with every value multiplied by ``factor`` (1e3: seconds -> ms)."""
        return Summary(self.median * factor, self.p10 * factor, self.p90 * factor,
                       tuple(x * factor for x in self.samples))


def _check(warmup: int, repeats: int) -> None:
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")


def time_calls(fn: Callable[[], Any], *, warmup: int = 3, repeats: int = 10,
               clock: Clock = time.perf_counter) -> Summary:
    """Call ``fn`` ``warmup`` times, then time ``repeats`` calls; the summary is in seconds."""
    _check(warmup, repeats)
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return Summary.of(samples)


def alternation(repeats: int) -> Iterator[tuple[int, int]]:
    """The order of paired mode, one pair per repeat: (0, 1), (1, 0), (0, 1), ... (0 = ours, 1 = peer)."""
    for i in range(repeats):
        yield (0, 1) if i % 2 == 0 else (1, 0)


def time_paired(ours: Callable[[], Any], peer: Callable[[], Any], *, warmup: int = 3, repeats: int = 10,
                clock: Clock = time.perf_counter) -> tuple[Summary, Summary]:
    """Time two implementations alternately in this process; (ours, peer) summaries in seconds.

    Warm-up calls ours then peer ``warmup`` times; each repeat then times both once, in the
    order :func:`alternation` gives, so neither always runs first.
    """
    _check(warmup, repeats)
    for _ in range(warmup):
        ours()
        peer()
    fns = (ours, peer)
    samples: tuple[list[float], list[float]] = ([], [])
    for pair in alternation(repeats):
        for which in pair:
            t0 = clock()
            fns[which]()
            samples[which].append(clock() - t0)
    return Summary.of(samples[0]), Summary.of(samples[1])
