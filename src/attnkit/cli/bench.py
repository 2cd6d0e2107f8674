"""``attnkit bench``: attnkit's attention beside the peer it replaces, timed in the same run.

Protocol (CPU): ``torch.set_num_threads(2)``, float32, warm-up 3
then >= 10 repeats, median and p10/p90 in milliseconds; every configuration
runs in a fresh subprocess per implementation (``--quick`` runs in-process);
peak memory is the growth of the process's resident high-water mark over one
steady-state call (``VmHWM`` reset after the warm-up through
/proc/self/clear_refs, so compilation is not counted; glibc is told to return
freed blocks to the OS so reuse does not hide allocations; falls back to the
``ru_maxrss`` delta of a cold call where the reset is unavailable).

Suites (each of our rows sits beside its peer and the ratio peer/ours, so > 1
means attnkit is faster or smaller):

* ``dot``: ``attnkit.attention`` (dispatches to the ``sdpa`` backend) vs
  ``torch.nn.functional.scaled_dot_product_attention`` called directly.
  B·N = 4096 tokens, H=8/E=64 and H=4/E=128, N = 256..4096.
* ``mha``: ``attnkit.nn.MultiheadAttention`` vs ``torch.nn.MultiheadAttention``
  (same weights), need_weights False and True.
* ``additive``: ``attention(score="additive")`` (the ``chunked`` backend) vs
  the Keras/OpenNMT formula that materialises (B, L, S, D) (``naive_eager``),
  ``torch.compile`` of that formula (``naive_compile``) and the same tile loop
  differentiated by plain autograd (``chunked_autograd``, no custom backward).
  B=4, H=1, D=128, L=S=256..1024, plus L=S=8192 (one repeat) where the naive
  formula cannot run; rows report pairs·D per second.

Configurations a peer cannot fit in memory are reported, not run. The harness is
``attnkit.bench`` (timing, memory, suites, runner); this command parses the flags
and prints its rows.

    attnkit bench --suite additive --json
    attnkit bench --quick
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..bench import Options
from ..bench import rows as bench_rows
from ..bench.suites import SUITES
from . import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time attnkit's kernels beside torch SDPA, nn.MultiheadAttention and naive additive attention",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--suite", default=",".join(SUITES), help=f"comma-separated suites from {', '.join(SUITES)}")
    p.add_argument("--peers", default=None, help="comma-separated peers to run (default: all of each suite)")
    p.add_argument("--mode", default="fwd,fwd+bwd", help="fwd, fwd+bwd or both (default both)")
    p.add_argument("--sizes", default=None, help="comma-separated N (dot, mha) or L=S (additive) to run")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 warm-up, 3 repeats, in-process (smoke test)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up calls (default 3)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls (default 10)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--paired", action="store_true",
                   help="time ours and the peer alternately in one subprocess (fairer on a busy machine)")
    p.add_argument("--json", action="store_true", help="print one JSON object per row instead of a table")
    p.add_argument("--out", default=None, help="also write all rows as a JSON list to this file")
    p.set_defaults(func=run)


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    hdr = (f"{'suite':<9} {'shape':<30} {'mode':<8} {'ours ms (p10-p90)':>22} {'peer':<17} "
           f"{'peer ms (p10-p90)':>22} {'x faster':>8} {'MB ours':>8} {'MB peer':>8} {'x mem':>6}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        ours = f"{_fmt(r['ms_median'])} ({_fmt(r['ms_p10'])}-{_fmt(r['ms_p90'])})"
        peer = f"{_fmt(r['peer_ms_median'])} ({_fmt(r['peer_ms_p10'])}-{_fmt(r['peer_ms_p90'])})"
        if r.get("peer_error"):
            peer = "cannot run"
        if r.get("error"):
            ours = "error"
        print(f"{r['suite']:<9} {r['shape']:<30} {r['mode']:<8} {ours:>22} {r['peer']:<17} {peer:>22} "
              f"{_fmt(r['speedup'], '.2f'):>8} {_fmt(r['peak_mb'], '.0f'):>8} {_fmt(r['peer_peak_mb'], '.0f'):>8} "
              f"{_fmt(r['memory_ratio'], '.1f'):>6}")
    notes = sorted({f"{r['peer']}: {r['peer_error']}" for r in rows if r.get("peer_error")}
                   | {f"{r['impl']}: {r['error']}" for r in rows if r.get("error")})
    for n in notes:
        print(f"  note: {n}")
    print("x faster = peer ms / ours (> 1: attnkit faster); x mem = peer MB / ours. Same run, same machine.")


def run(args: argparse.Namespace) -> int:
    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    for m in modes:
        if m not in ("fwd", "fwd+bwd"):
            raise CliError(f"--mode must list fwd and/or fwd+bwd, got {m!r}")
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        raise CliError(f"--repeats >= 1, --warmup >= 0, --threads >= 1 needed; got {args.repeats}, "
                       f"{args.warmup}, {args.threads}")
    sizes = None
    if args.sizes:
        try:
            sizes = [int(x) for x in args.sizes.split(",")]
        except ValueError:
            raise CliError(f"--sizes must be comma-separated integers, got {args.sizes!r}") from None
    peers = set(args.peers.split(",")) if args.peers else None
    options = Options(warmup=args.warmup if not args.quick else 1, repeats=args.repeats if not args.quick else 3,
                      threads=args.threads, memory=not args.no_memory, quick=args.quick)
    rows = []
    for row in bench_rows(suites, modes, sizes=sizes, peers=peers, options=options, paired=args.paired):
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        print_table(rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"threads": args.threads, "rows": rows}, f, indent=1)
    return 0
