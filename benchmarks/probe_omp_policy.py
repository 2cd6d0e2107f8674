"""Probe: what OMP_WAIT_POLICY does to the additive kernel and to many small OpenMP ops, quiet and loaded.

Run it twice, once as is and once with the policy given (attnkit's default is PASSIVE; libgomp's own is
to spin a while after each parallel region)::

    OMP_WAIT_POLICY=ACTIVE .venv/bin/python benchmarks/probe_omp_policy.py
    .venv/bin/python benchmarks/probe_omp_policy.py

B=4, H=1, L=S=1024, E=D=128 additive fwd+bwd (2 threads) and 200 small ops (64 x 128 x 128 matmul + tanh),
medians of 5, first as the machine is, then beside two processes that loop a one-thread matmul.
"""

# ruff: noqa: I001  (attnkit before torch: it sets the policy before torch loads OpenMP)
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, Callable

import attnkit  # noqa: F401
import torch

from attnkit.bench import suites

SPIN = "import torch\ntorch.set_num_threads(1)\na = torch.randn(256, 256)\nwhile True:\n    a @ a\n"


def median_ms(fn: Callable[[], Any], n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[n // 2] * 1e3


def main() -> None:
    torch.set_num_threads(2)
    shape = {"B": 4, "H": 1, "N": 1024, "E": 128, "D": 128}
    ours = suites.build_step({"suite": "additive", "shape": shape, "mode": "fwd+bwd", "impl": "attnkit_additive"})
    ours()
    ours()
    a = torch.randn(64, 128, 128)

    def small() -> None:
        for _ in range(200):
            torch.tanh(a @ a).sum()

    policy = os.environ.get("OMP_WAIT_POLICY")
    print(f"OMP_WAIT_POLICY={policy} load {os.getloadavg()[0]:.1f}: quiet: additive {median_ms(ours):.0f} ms, "
          f"small ops {median_ms(small):.0f} ms")
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(2)]
    try:
        time.sleep(2)
        print(f"OMP_WAIT_POLICY={policy} load {os.getloadavg()[0]:.1f}: loaded: additive {median_ms(ours):.0f} ms, "
              f"small ops {median_ms(small):.0f} ms")
    finally:
        for p in spinners:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
