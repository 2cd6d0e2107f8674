"""``attnkit compare TASK --attention a,b,c``: train one model per mechanism, same budget, one table.

    attnkit compare g2p --attention bahdanau,luong-general,local-m,local-p --minutes 5
    attnkit compare numbers --model seq2seq,transformer --minutes 3   # RNN beside Transformer
    attnkit compare digits --model cnn --attention none,se,spatial,cbam  # 3 seeds each: mean ± spread

Like Luong et al. 2015 (arXiv:1508.04025, Table 1) comparing global and
local attention: every row uses the same task split, seed, decoder, sizes and
budget, and reports the held-out exact match, token error rate (PER for
g2p), word error rate, parameter count, training time and training
throughput: ``tokens/s`` = target tokens trained on / seconds spent in
training steps (validation excluded; see :mod:`attnkit.train.loop`).

``--seeds 0,1,2`` trains every row once per seed (split, order and initialisation);
image tasks do so by default (``attnkit.presets.COMPARE_SEEDS``) and print test
accuracy as mean ± standard deviation with its range over the seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import CliError, add_train_flags, build, json_line, run_dir_error

__all__ = ["add_parser", "run", "format_table", "format_seed_table", "seed_summary"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="train several attention mechanisms on one task and tabulate them",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", help="task name")
    p.add_argument("--attention", help="comma-separated mechanism names, e.g. bahdanau,luong-general,local-m,local-p")
    add_train_flags(p)
    p.add_argument("--seeds", help="comma-separated seeds, each row trained once per seed (default: --seed; "
                   "image tasks: 0,1,2)")
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


def seed_summary(rows: list[dict]) -> list[dict]:
    """One dict per label: test accuracy mean, sample standard deviation, min and max over its seeds,
    parameters, mean seconds per run and steps."""
    out: dict[str, dict] = {}
    for r in rows:
        g = out.setdefault(r["label"], {"label": r["label"], "accuracies": [], "seconds": [], "seeds": []})
        g["accuracies"].append(float(r.get("accuracy", float("nan"))))
        g["seconds"].append(float(r.get("seconds", 0.0)))
        g["seeds"].append(r.get("seed"))
        g["parameters"], g["steps"] = r.get("parameters", 0), r.get("steps")
    for g in out.values():
        a, n = g["accuracies"], len(g["accuracies"])
        g["accuracy_mean"] = sum(a) / n
        g["accuracy_std"] = (sum((x - g["accuracy_mean"]) ** 2 for x in a) / (n - 1)) ** 0.5 if n > 1 else 0.0
        g["accuracy_min"], g["accuracy_max"] = min(a), max(a)
        g["seconds_mean"] = sum(g["seconds"]) / n
    return list(out.values())


def format_seed_table(groups: list[dict]) -> str:
    """The comparison of :func:`seed_summary` groups as a text table: accuracy mean ± sd (min-max) over seeds."""
    heads = ["model / attention", "accuracy (mean ± sd)", "min - max", "seeds", "parameters", "time/run (s)", "steps"]
    body = [[str(g["label"]), f"{g['accuracy_mean']:.2%} ± {g['accuracy_std']:.2%}",
             f"{g['accuracy_min']:.2%} - {g['accuracy_max']:.2%}", str(len(g["accuracies"])), f"{g['parameters']:,}",
             f"{g['seconds_mean']:.1f}", str(g.get("steps", ""))] for g in groups]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(heads, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(b, widths))) for b in body]
    return "\n".join(lines)


def _seeds(args: argparse.Namespace) -> list[int]:
    from ..presets import COMPARE_SEEDS

    if args.seeds is None:
        if args.seed is None and args.task in COMPARE_SEEDS:
            return list(COMPARE_SEEDS[args.task])
        return [args.seed or 0]
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"--seeds takes comma-separated integers (e.g. 0,1,2), got {args.seeds!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise CliError(f"--seeds takes distinct comma-separated integers (e.g. 0,1,2), got {args.seeds!r}")
    if args.seed is not None:
        raise CliError("give --seed or --seeds, not both")
    return seeds


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
    seeds = _seeds(args)
    built = []  # every model x attention x seed; fail fast on a bad name, before any training
    for m in models or [args.model]:
        for n in names or [None]:
            label = "/".join(x for x in ((m if len(models) > 1 else None), n) if x) or str(m)
            for seed in seeds:
                ns = argparse.Namespace(**{**vars(args), "model": m, "seed": seed})
                built.append((label, seed, *build(args.task, ns, attention=n)))
    root = Path(args.out) if args.out else default_run_dir(args.task, "compare")
    rows = []
    for n, seed, task, model in built:
        if not args.json:
            at = f" seed {seed}" if len(seeds) > 1 else ""
            print(f"training {n}{at} ({sum(p.numel() for p in model.parameters()):,} parameters) ...", flush=True)
        try:
            res = train(
                task, model, steps=args.steps, minutes=args.minutes, seed=seed, device=args.device,
                out_dir=root / n / f"seed{seed}" if len(seeds) > 1 else root / n, force=args.force,
                batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every,
                progress=False if args.json else None,
            )
        except RunDirectoryError as e:
            raise run_dir_error(e) from None
        res["label"], res["seed"] = n, seed
        rows.append(res)
    unit = {"phoneme": "PER", "char": "CER"}.get(getattr(built[0][2], "unit", "char"), "token")
    root.mkdir(parents=True, exist_ok=True)
    (root / "compare.json").write_text(json.dumps(rows, indent=1) + "\n")
    by_accuracy = getattr(built[0][2], "primary_metric", None) == "accuracy"
    summary = seed_summary(rows) if by_accuracy else None
    if args.json:
        print(json_line({"task": args.task, "runs": rows, **({"summary": summary} if summary else {}),
                         "run_dir": str(root)}))
        return 0
    print(format_seed_table(summary) if summary else format_table(rows, unit))
    print(f"runs and compare.json in {root}")
    return 0
