"""What reading ``tensor.device.type`` costs inside a training step, against ``is_cpu``.

attnkit's hot checks (``AttentionSpec.device_type`` and the backends' support checks)
read ``is_cpu`` / ``is_cuda`` instead of ``device.type``. In a tight loop both cost well under
a microsecond; between a (768 x 128) x (128 x 384) linear and its backward, as in baby GPT's
attention, ``device.type`` (which builds a new string) costs much more. This measures both
reads there: median, p10/p90 (``attnkit.bench.timing.Summary``) over ``--repeats`` steps
after 20 warm-up steps, and the same reads in a tight loop.

    .venv/bin/python benchmarks/bench_device_type.py
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit

import torch
import torch.nn.functional as F

from attnkit.bench.timing import Summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.randn(12, 64, 128, requires_grad=True)  # (B, L, D)
    w = torch.randn(384, 128, requires_grad=True)  # (3 D, D)
    reads = {"x.device.type": lambda: x.device.type, "x.is_cpu": lambda: x.is_cpu}
    times: dict[str, list[float]] = {k: [] for k in reads}
    for i in range(args.repeats + 20):
        for name, read in reads.items():
            y = F.linear(x, w)  # (B, L, 3 D)
            t0 = time.perf_counter()
            read()
            dt = time.perf_counter() - t0
            y.sum().backward()
            if i >= 20:
                times[name].append(dt)
    print(f"# {args.threads} threads, {args.repeats} steps; microseconds per read")
    print(f"{'read':16s} {'in a step':>10s} {'p10':>8s} {'p90':>8s} {'tight loop':>11s}")
    for name, read in reads.items():
        us = Summary.of(times[name]).scaled(1e6)
        tight = timeit.timeit(read, number=100_000) / 100_000
        print(f"{name:16s} {us.median:10.2f} {us.p10:8.2f} {us.p90:8.2f} {tight * 1e6:11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
