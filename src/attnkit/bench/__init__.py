"""attnkit.bench: the benchmark harness behind ``attnkit bench`` and the scripts in benchmarks/.

* :mod:`~attnkit.bench.timing`: warm-up, repeats, median and p10/p90 (:class:`Summary`),
  and the paired mode that alternates ours and the peer in one process;
* :mod:`~attnkit.bench.memory`: peak resident memory of one steady-state call, in a
  fresh process per configuration;
* :mod:`~attnkit.bench.suites`: the suites (dot, mha, additive) with their peers (torch
  SDPA, torch.nn.MultiheadAttention, the naive additive formula eager and compiled);
* :mod:`~attnkit.bench.runner`: every configuration run, timed and measured, as result rows.

    >>> from attnkit.bench import time_calls
    >>> s = time_calls(lambda: sum(range(100)), warmup=1, repeats=5)
    >>> s.n, s.p10 <= s.median <= s.p90
    (5, True)
"""

from . import memory, runner, suites, timing
from .runner import Options, rows
from .timing import Summary, alternation, time_calls, time_paired

__all__ = ["Options", "Summary", "alternation", "memory", "rows", "runner", "suites", "time_calls",
           "time_paired", "timing"]
