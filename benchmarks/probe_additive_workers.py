"""Probe: do the chunked kernel's additive workers run at once? (B=4, H=1, L=S=1024, D=128, fwd+bwd)

Times the same call in five arrangements: compiled tiles on 2 single-threaded workers with inductor's
C++ wrapper (the default since the second 2026-12-02 session) and with its default Python wrapper
(whose pybinding call holds the GIL), compiled tiles on 1 worker over 2 OpenMP threads (the kernel of
the first 2026-12-02 session), 1 worker on 1 thread, and the eager tiles on 2 workers. Medians of 5
after 2 warm-up calls (the warm-up compiles); run it on a quiet machine and read the load it prints.

    .venv/bin/python benchmarks/probe_additive_workers.py
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import torch

from attnkit.backends.additive_tiles import COMPILED
from attnkit.backends.chunked import kernel
from attnkit.bench import suites


def median_ms(fn: Callable[[], Any], repeats: int = 5) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2] * 1000


def main() -> None:
    torch.set_num_threads(2)
    cfg = {"suite": "additive", "shape": {"B": 4, "H": 1, "N": 1024, "E": 128, "D": 128}, "mode": "fwd+bwd",
           "impl": "attnkit_additive"}
    step = suites.build_step(cfg)
    real = kernel.worker_count
    print(f"load {os.getloadavg()[0]:.1f}")
    print(f"2 workers, C++ wrapper (default)   {median_ms(step):8.0f} ms")
    COMPILED.cpp_wrapper = False
    COMPILED.fns.clear()
    print(f"2 workers, Python wrapper          {median_ms(step):8.0f} ms")
    COMPILED.cpp_wrapper = True
    kernel.worker_count = lambda: 1
    print(f"1 worker, 2 OpenMP threads         {median_ms(step):8.0f} ms")
    torch.set_num_threads(1)
    print(f"1 worker, 1 thread                 {median_ms(step):8.0f} ms")
    torch.set_num_threads(2)
    kernel.worker_count = real
    COMPILED.failed = "eager tiles, for the probe"
    print(f"eager tiles, 2 workers             {median_ms(step, repeats=1):8.0f} ms")
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
