"""``attnkit evaluate RUN_DIR``: score a trained run on its held-out split.

Exact match, token error rate (characters or phonemes: CER/PER), word error
rate and, for text targets, chrF (sacrebleu). ``--beam K`` decodes with beam
search; ``--json`` prints the metrics as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import time

from ._common import CliError
from .train import json_line, print_metrics

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a trained run (exact match, PER/CER, WER, chrF)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory written by attnkit train / demo")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"), help="which split (default test)")
    p.add_argument("--beam", type=int, default=1, help="beam size (default 1 = greedy)")
    p.add_argument("--length-penalty", type=float, default=0.0,
                   help="beam scores are log p / length**this (default 0: the raw log-probability)")
    p.add_argument("--limit", type=int, help="score only the first N examples")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"), help="which checkpoint (default best)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--errors", type=int, default=0, metavar="N", help="also print N wrong predictions")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import load_run, resolve_device

    if args.beam < 1:
        raise CliError(f"--beam must be >= 1, got {args.beam}")
    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit must be >= 1, got {args.limit}")
    dev = resolve_device(args.device)
    task, model, meta = load_run(args.run_dir, which=args.checkpoint, device=dev)
    t0 = time.perf_counter()
    kw = {"max_examples": args.limit}
    if hasattr(task, "predict"):
        kw.update(beam_size=args.beam, length_penalty=args.length_penalty, return_predictions=bool(args.errors))
    m = task.evaluate(model, args.split, **kw)
    preds = m.pop("predictions", None)
    summary = meta.get("summary", {})
    result = {
        "task": task.name,
        "model": meta["config"].get("model"),
        "attention": meta["config"].get("attention"),
        "split": args.split,
        "checkpoint": args.checkpoint,
        "beam": args.beam,
        **{k: v for k, v in m.items() if v is None or isinstance(v, (int, float))},  # None: could not be computed
        "steps": meta.get("step"),
        "parameters": summary.get("parameters"),
        "seconds": round(time.perf_counter() - t0, 2),
        "run_dir": str(args.run_dir),
    }
    if args.json:
        print(json_line(result))
        return 0
    print_metrics(result, title=f"{task.name} {args.split} ({int(m.get('examples', 0))} examples, "
                                f"{args.checkpoint} checkpoint at step {meta.get('step')}, beam {args.beam})")
    if preds:
        wrong = [p for p in preds if not p["correct"]][: args.errors]
        if wrong:
            print("wrong predictions:")
        for p in wrong:
            print(f"  {p['src']!r} -> {p['output']!r}  (expected {' | '.join(map(repr, p['refs']))})")
    return 0
