"""Probe: do the chunked kernel's additive workers run at once? (B=4, H=1, L=S=1024, D=128, fwd+bwd)

Times the same call with the kernel's ``worker_count`` patched: 2 workers (the default on 2 threads),
1 worker on 2 OpenMP threads (the kernel before 2026-12-02), 1 worker on 1 thread, and the eager tiles
on 2 workers. Medians of 5 after 2 warm-up calls; run it on a quiet machine.

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
    print(f"2 workers (default)          {median_ms(step):8.0f} ms")
    kernel.worker_count = lambda: 1
    print(f"1 worker, 2 OpenMP threads   {median_ms(step):8.0f} ms")
    torch.set_num_threads(1)
    print(f"1 worker, 1 thread           {median_ms(step):8.0f} ms")
    torch.set_num_threads(2)
    kernel.worker_count = real
    COMPILED.failed = "eager tiles, for the probe"
    print(f"eager tiles, 2 workers       {median_ms(step, repeats=1):8.0f} ms")


if __name__ == "__main__":
    main()
