"""``attnkit compare TASK --attention a,b,c``: train one model per mechanism, same budget, one table.

    attnkit compare g2p --attention bahdanau,luong-general,local-m,local-p --minutes 5
    attnkit compare numbers --model seq2seq,transformer --minutes 3   # RNN beside Transformer

Like Luong et al. 2015 (arXiv:1508.04025, Table 1) comparing global and
local attention: every row uses the same task split, seed, decoder, sizes and
budget, and reports the held-out exact match, token error rate (PER for
g2p), word error rate, parameter count, training time and training
throughput: ``tokens/s`` = target tokens trained on / seconds spent in
training steps (validation excluded; see :mod:`attnkit.train.loop`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import CliError, add_train_flags, build, json_line, run_dir_error

__all__ = ["add_parser", "run", "format_table"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="train several attention mechanisms on one task and tabulate them",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", help="task name")
    p.add_argument("--attention", help="comma-separated mechanism names, e.g. bahdanau,luong-general,local-m,local-p")
    add_train_flags(p)
    p.add_argument("--out", help="directory for the runs (one sub-directory per mechanism) and compare.json")
    p.set_defaults(func=run)


def format_table(rows: list[dict], unit: str) -> str:
    """The comparison as a text table, one row per run (``train()`` result dicts); missing figures print as nan / -."""
    heads = ["model / attention", "exact match", unit, "WER", "parameters", "time (s)", "tokens/s", "steps"]
    body = [
        [
            str(r.get("label") or r.get("attention")),
            f"{r.get('exact_match', float('nan')):.2%}",
            f"{r.get('token_error_rate', float('nan')):.2%}",
            f"{r.get('word_error_rate', float('nan')):.2%}",
            f"{r.get('parameters', 0):,}",
            f"{r.get('seconds', 0):.1f}",
            f"{r['tokens_per_second']:,.0f}" if isinstance(r.get("tokens_per_second"), (int, float)) else "-",
            str(r.get("steps", "")),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(heads, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(b, widths))) for b in body]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..train import default_run_dir, train
    from ..train.lock import RunDirectoryError

    names = [n.strip() for n in (args.attention or "").split(",") if n.strip()]
    models = [m.strip() for m in (args.model or "").split(",") if m.strip()]
    if not names and len(models) < 2:
        raise CliError("give --attention a,b (e.g. bahdanau,luong-general) and/or --model a,b "
                       "(e.g. seq2seq,transformer)")
    if len(set(names)) != len(names) or len(set(models)) != len(models):
        raise CliError(f"--attention/--model list a name twice: {args.attention or ''} {args.model or ''}")
    built = []  # every model x attention; fail fast on a bad name, before any training
    for m in models or [args.model]:
        for n in names or [None]:
            label = "/".join(x for x in ((m if len(models) > 1 else None), n) if x)
            built.append((label, *build(args.task, argparse.Namespace(**{**vars(args), "model": m}), attention=n)))
    root = Path(args.out) if args.out else default_run_dir(args.task, "compare")
    rows = []
    for n, task, model in built:
        if not args.json:
            print(f"training {n} ({sum(p.numel() for p in model.parameters()):,} parameters) ...", flush=True)
        try:
            res = train(
                task, model, steps=args.steps, minutes=args.minutes, seed=args.seed or 0, device=args.device,
                out_dir=root / n, force=args.force, batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every,
                progress=False if args.json else None,
            )
        except RunDirectoryError as e:
            raise run_dir_error(e) from None
        res["label"] = n
        rows.append(res)
    unit = {"phoneme": "PER", "char": "CER"}.get(getattr(built[0][1], "unit", "char"), "token")
    root.mkdir(parents=True, exist_ok=True)
    (root / "compare.json").write_text(json.dumps(rows, indent=1) + "\n")
    if args.json:
        print(json_line({"task": args.task, "runs": rows, "run_dir": str(root)}))
        return 0
    print(format_table(rows, unit))
    print(f"runs and compare.json in {root}")
    return 0
