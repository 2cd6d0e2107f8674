"""CPU benchmark, the protocol of ``attnkit bench``: every suite, JSON under benchmarks/results/.

    python benchmarks/bench_cpu.py                   # dot, mha, additive (tens of minutes on 2 cores)
    python benchmarks/bench_cpu.py --suite additive  # one suite

Each suite writes ``benchmarks/results/cpu_<suite>.json`` and prints its table
(ours beside the peer measured in the same run, ratio peer/ours). Other jobs on
the machine make timings noisy: run it on an idle machine and read p10/p90.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from attnkit.cli import main as cli

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="dot,mha,additive")
    ap.add_argument("--no-memory", action="store_true")
    args = ap.parse_args(argv)
    (HERE / "results").mkdir(exist_ok=True)
    rc = 0
    for suite in args.suite.split(","):
        extra = ["--no-memory"] if args.no_memory else []
        if suite == "mha":
            extra += ["--sizes", "512,1024,2048"]
        print(f"\n== {suite} ==", flush=True)
        rc |= cli(["bench", "--suite", suite, "--out", str(HERE / "results" / f"cpu_{suite}.json"), *extra])
    return rc


if __name__ == "__main__":
    sys.exit(main())
