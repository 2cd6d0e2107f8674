"""Two checkouts of attnkit side by side in one run: the speed a change must not lose.

Runs the same measurements on a ``--before`` and an ``--after`` source tree, alternating
them (before, after, then after, before, ...) so a machine that gets busier during the run
slows both alike, and prints each figure's median over the rounds with the ratio after/before:

* ``dot``: ``attnkit bench --suite dot --paired`` (attnkit.attention against torch SDPA in one
  process); the figure is SDPA's time over ours (1.0 = parity, within 5 % is the target);
* ``gpt``: ``benchmarks/bench_gpt.py`` (baby GPT trained by attnkit against nanoGPT's plain
  PyTorch model, in lockstep); the figure is the tokens/s ratio ours/plain;
* ``plain call``: microseconds per ``attention(q, k, v, causal=True)`` at (1, 4, 64, 32), the
  overhead a Transformer layer pays per call (timeit, best of 5 runs of 2,000 calls).

Each tree is imported from its own ``src/`` (``PYTHONPATH``) by the interpreter running this
script, and runs its own ``benchmarks/bench_gpt.py``.

    .venv/bin/python benchmarks/bench_before_after.py --before ../before --after . --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PLAIN_CALL = r"""
import timeit, torch
torch.set_num_threads(1)
from attnkit.functional import attention
q = torch.randn(1, 4, 64, 32); k = torch.randn(1, 4, 64, 32); v = torch.randn(1, 4, 64, 32)
attention(q, k, v, causal=True)
n = 2000
best = min(timeit.repeat(lambda: attention(q, k, v, causal=True), number=n, repeat=5)) / n
sdpa = min(timeit.repeat(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True),
                         number=n, repeat=5)) / n
print(f"{best * 1e6:.3f} {sdpa * 1e6:.3f}")
"""


def _env(tree: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree / "src")
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def _run(cmd: list[str], tree: Path, threads: int) -> str:
    out = subprocess.run(cmd, cwd=tree, env=_env(tree, threads), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {tree}:\n{out.stderr[-2000:]}")
    return out.stdout


def dot_ratios(tree: Path, sizes: str) -> dict[str, float]:
    """SDPA time / attnkit time per dot-suite row (1.0 = parity)."""
    out = _run([sys.executable, "-m", "attnkit", "bench", "--suite", "dot", "--sizes", sizes, "--paired",
                "--no-memory", "--json"], tree, 2)
    rows = {}
    for line in out.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            if r.get("speedup"):
                rows[f"dot {r['shape']} {r['mode']}"] = r["speedup"]
    return rows


def gpt_ratio(tree: Path, iters: int) -> dict[str, float]:
    """attnkit GPT tokens/s over plain PyTorch's, trained in lockstep."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "gpt.json"
        _run([sys.executable, str(tree / "benchmarks" / "bench_gpt.py"), "--iters", str(iters), "--models",
              "attnkit,plain", "--threads", "2", "--out", str(out)], tree, 2)
        res = json.loads(out.read_text())
    (ratio,) = res["ratio_tokens_per_s"].values()
    ours = [m for n, m in res["models"].items() if n in res["ratio_tokens_per_s"]][0]
    return {"gpt tokens/s ratio (ours/plain)": ratio, "gpt tokens/s (ours)": ours["tokens_per_s"]}


def plain_call(tree: Path) -> dict[str, float]:
    ours, sdpa = map(float, _run([sys.executable, "-c", PLAIN_CALL], tree, 1).split())
    return {"plain call us (attention)": ours, "plain call us (SDPA itself)": sdpa}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="source tree before the change")
    ap.add_argument("--after", type=Path, default=Path("."), help="source tree after the change (default .)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--gpt-iters", type=int, default=400)
    ap.add_argument("--sizes", default="1024,4096", help="dot-suite sequence lengths")
    ap.add_argument("--only", default="dot,gpt,plain", help="comma-separated subset of dot, gpt, plain")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/before_after.json"))
    args = ap.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    only = set(args.only.split(","))
    figures: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for rnd in range(args.rounds):
        order = ("before", "after") if rnd % 2 == 0 else ("after", "before")
        for side in order:
            tree = trees[side]
            got: dict[str, float] = {}
            if "plain" in only:
                got |= plain_call(tree)
            if "dot" in only:
                got |= dot_ratios(tree, args.sizes)
            if "gpt" in only:
                got |= gpt_ratio(tree, args.gpt_iters)
            for k, v in got.items():
                figures[side].setdefault(k, []).append(v)
            load = os.getloadavg()[0]
            print(f"round {rnd + 1} {side}: {len(got)} figures (load {load:.2f})", flush=True)
    print(f"\n{'figure':44s} {'before':>10s} {'after':>10s} {'after/before':>13s}   (median of {args.rounds} rounds)")
    table = []
    for k in figures["after"]:
        b = statistics.median(figures["before"].get(k, [float("nan")]))
        a = statistics.median(figures["after"][k])
        table.append({"figure": k, "before": b, "after": a, "ratio": a / b if b else None,
                      "before_all": figures["before"].get(k), "after_all": figures["after"][k]})
        print(f"{k:44s} {b:10.3f} {a:10.3f} {a / b if b else float('nan'):13.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"trees": {k: str(v) for k, v in trees.items()}, "rounds": args.rounds,
                                    "load_end": os.getloadavg(), "rows": table}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
