"""``attnkit train TASK``: train a registered model on a registered task.

    attnkit train numbers --attention bahdanau --steps 3000 --out runs/numbers
    attnkit train g2p --attention local-p --decoder luong --minutes 30
    attnkit train --resume runs/numbers --steps 5000      # continue, exactly

A progress bar (loss, accuracy, tokens/s, ETA) is drawn on a terminal;
``--json`` prints the final metrics as one JSON object on the last line.
The run directory holds ``best.json``/``last.json`` with their safetensors,
``history.jsonl`` and ``metrics.json``.
"""

from __future__ import annotations

import argparse

from ._common import CliError, add_train_flags, build, json_line, print_metrics, set_threads

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on a task (numbers, dates, g2p, copy, reverse, sort, ...)", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", nargs="?", help="task name (attnkit.data.list_tasks())")
    p.add_argument("--attention", help="seq2seq: an attention mechanism (default bahdanau); transformer/gpt/bert: "
                   "a score or local (the table: attnkit list)")
    add_train_flags(p)
    p.add_argument("--out", help="run directory (default runs/TASK-ATTENTION-TIMESTAMP)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import default_run_dir, model_config, model_name, resume_run, train

    if args.resume:
        set_threads(args.threads)
        if args.task:
            raise CliError("--resume RUN_DIR continues that run's task; drop the TASK argument")
        extra = {k: getattr(args, k) for k in ("steps", "minutes", "eval_every") if getattr(args, k) is not None}
        result = resume_run(args.resume, device=args.device, progress=None if not args.json else False, **extra)
    else:
        if not args.task:
            from ..data import list_tasks

            raise CliError(f"name a task: attnkit train TASK; tasks: {', '.join(list_tasks())}")
        task, model = build(args.task, args, attention=args.attention)
        out = args.out or default_run_dir(args.task, model_config(model).get("attention") or model_name(model))
        if not args.json:
            print(f"training {model_name(model)} ({sum(p.numel() for p in model.parameters()):,} parameters) on {task!r} -> {out}")
        result = train(
            task, model, steps=args.steps, minutes=args.minutes, seed=args.seed, device=args.device, out_dir=out,
            batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every, progress=False if args.json else None,
        )
    if args.json:
        print(json_line(result))
    else:
        print_metrics(result, title=f"test metrics (best checkpoint) — run directory {result['run_dir']}")
    return 0
