# ruff: noqa: I001
"""The fused additive kernel's lead over the naive formula, on a quiet machine and under a fixed load.

``attnkit bench --suite additive --sizes 1024 --paired`` compares ``attention(score="additive")``
(the ``chunked`` backend) with the Keras/OpenNMT formula that materialises (B, L, S, D)
(``naive_eager``). This script runs that paired comparison (ours and naive alternate call by
call in this process, 2 torch threads, B=4, H=1, E=D=128) twice: first as the machine is, then
under a fixed background load that it starts itself: ``--spinners`` processes, each looping a
256x256 float32 matmul on one thread. It reports

    lead_quiet  = naive / ours (as the machine is),  lead_loaded = naive / ours (with the spinners),
    retained    = lead_loaded / lead_quiet           (target >= 0.80: we degrade no worse than naive)

with ``os.getloadavg()`` beside each (the machine is shared: "quiet" is whatever the others leave).
    .venv/bin/python benchmarks/bench_additive_load.py                 # N=1024, forward + backward
    .venv/bin/python benchmarks/bench_additive_load.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import attnkit  # noqa: F401  (before torch, as `attnkit bench` does: it sets OMP_WAIT_POLICY before OpenMP loads)
import torch

from attnkit.bench import suites
from attnkit.bench.timing import Summary

SPIN = "import torch\ntorch.set_num_threads(1)\na = torch.randn(256, 256)\nwhile True:\n    a @ a\n"



def timed(fns: dict[str, Callable[[], Any]], warmup: int, repeats: int) -> dict[str, Summary]:
    """Each of ``fns`` timed ``repeats`` times, alternating (the order rotates each repeat)."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            fns[n]()
            samples[n].append(time.perf_counter() - t0)
    return {n: Summary.of(s) for n, s in samples.items()}


def condition(fns: dict[str, Callable[[], Any]], warmup: int, repeats: int) -> dict[str, Any]:
    load0 = os.getloadavg()
    res = timed(fns, warmup, repeats)
    out: dict[str, Any] = {"load_avg_start": load0, "load_avg_end": os.getloadavg()}
    for n, s in res.items():
        out[n] = {"median_ms": s.median * 1e3, "p10_ms": s.p10 * 1e3, "p90_ms": s.p90 * 1e3}
    naive = res["naive_eager"].median
    out["lead"] = naive / res["attnkit_additive"].median
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024, help="L = S (default 1024)")
    ap.add_argument("--mode", default="fwd+bwd", choices=("fwd", "fwd+bwd"))
    ap.add_argument("--spinners", type=int, default=2, help="background processes of the fixed load (default 2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/additive_load.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = {"suite": "additive", "shape": {"B": 4, "H": 1, "N": args.size, "E": 128, "D": 128}, "mode": args.mode}
    fns = {"attnkit_additive": suites.build_step({**cfg, "impl": "attnkit_additive"}),
           "naive_eager": suites.build_step({**cfg, "impl": "naive_eager"})}
    print(f"# additive B=4 H=1 N={args.size} E=D=128 {args.mode}, {args.threads} threads, warm-up {args.warmup}, "
          f"{args.repeats} alternating repeats; fixed load: {args.spinners} single-thread matmul loops; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    quiet = condition(fns, args.warmup, args.repeats)
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.spinners)]
    try:
        time.sleep(2.0)
        loaded = condition(fns, 1, args.repeats)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    config = vars(args) | {"out": str(args.out), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    result = {"config": config, "quiet": quiet, "loaded": loaded,
              "lead_quiet": quiet["lead"], "lead_loaded": loaded["lead"],
              "retained": loaded["lead"] / quiet["lead"]}
    print(f"\n{'condition':10s} {'load avg (1 min)':>17s} " + " ".join(f"{n + ' ms':>22s}" for n in fns)
          + f" {'naive/ours':>11s}")
    for name, c in (("quiet", quiet), ("loaded", loaded)):
        cells = " ".join(f"{c[n]['median_ms']:10.0f} ({c[n]['p10_ms']:.0f}-{c[n]['p90_ms']:.0f})".rjust(22)
                         for n in fns)
        print(f"{name:10s} {c['load_avg_start'][0]:8.1f} -> {c['load_avg_end'][0]:4.1f}  {cells} "
              f"{c['lead']:10.2f}x")
    met = "met" if result["retained"] >= 0.8 else "missed"
    print(f"\nlead_quiet {result['lead_quiet']:.2f}x, lead_loaded {result['lead_loaded']:.2f}x, "
          f"retained {result['retained']:.2f} (target >= 0.80: {met})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
