"""Greedy against beam search on a trained run: exact match and character error rate per length rule.

Beam search ranks a finished hypothesis ``y`` (EOS included) by ``log p(y|x) / lp(|y|)``.
This script decodes the test (and validation) split of a run directory greedily and with a
beam for several rules, and prints each rule's figures beside greedy's, measured in the same run:

* ``len^a``: ``lp = |y| ** a`` (attnkit's rule; ``a = 0`` is the raw log-probability, ``a = 1``
  the default before 2026-12-02, a plain length normalisation);
* ``gnmt a``: ``lp = ((5 + |y|) / 6) ** a`` (Wu et al. 2016, arXiv:1609.08144, eq. 14), swapped in
  for the measurement only.

It also lists the examples whose output changes between greedy and each beam rule.

    attnkit demo --out runs/demo
    .venv/bin/python benchmarks/bench_beam.py --run runs/demo --beam 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from attnkit.models import decoding
from attnkit.train import load_run


def gnmt(alpha: float):  # noqa: ANN201  (the rule swapped into decoding for one measurement)
    def score(log_p: float, length: int, length_penalty: float) -> float:
        return log_p / (((5 + length) / 6) ** alpha)

    return score


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a run directory of a translation task (attnkit demo --out DIR)")
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--powers", default="1,0.5,0", help="len^a rules to measure (comma-separated a)")
    ap.add_argument("--gnmt", default="0.6,1", help="GNMT alphas to measure (comma-separated; empty: none)")
    ap.add_argument("--splits", default="test,valid")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/bench_beam.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    task, model, meta = load_run(args.run)
    original = decoding.normalised_score
    rules: list[tuple[str, float, object]] = [(f"len^{a}", float(a), original) for a in args.powers.split(",") if a]
    rules += [(f"gnmt {a}", 0.0, gnmt(float(a))) for a in args.gnmt.split(",") if a]
    result: dict = {"run": args.run, "beam": args.beam, "threads": args.threads, "load_avg": os.getloadavg(),
                    "splits": {}}
    for split in args.splits.split(","):
        greedy = task.evaluate(model, split, beam_size=1, return_predictions=True)
        rows = {"greedy": greedy}
        for name, power, rule in rules:
            decoding.normalised_score = rule  # type: ignore[assignment]
            try:
                rows[name] = task.evaluate(model, split, beam_size=args.beam, length_penalty=power,
                                           return_predictions=True)
            finally:
                decoding.normalised_score = original
        n = len(greedy["predictions"])
        print(f"\n{split}: {n} examples, beam {args.beam}")
        print(f"{'decoder':10s} {'exact match':>12s} {'CER':>8s}  changed vs greedy (better / worse)")
        out_split = {}
        for name, m in rows.items():
            changed = [(g, b) for g, b in zip(greedy["predictions"], m["predictions"]) if g["output"] != b["output"]]
            better = sum(b["correct"] and not g["correct"] for g, b in changed)
            worse = sum(g["correct"] and not b["correct"] for g, b in changed)
            print(f"{name:10s} {m['exact_match']:12.2%} {m['char_error_rate']:8.2%}  "
                  f"{len(changed)} ({better} / {worse})")
            for g, b in changed[:4]:
                print(f"           {g['src']!r}: greedy {g['output']!r} -> {b['output']!r} (ref {g['refs'][0]!r})")
            out_split[name] = {"exact_match": m["exact_match"], "char_error_rate": m["char_error_rate"],
                               "changed": len(changed), "better": better, "worse": worse,
                               "examples": [{"src": g["src"], "greedy": g["output"], "beam": b["output"],
                                             "ref": g["refs"][0]} for g, b in changed]}
        result["splits"][split] = out_split
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"\nload average {result['load_avg']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
