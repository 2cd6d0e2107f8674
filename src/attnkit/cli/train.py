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
import json
import math
from typing import Any

from . import CliError

__all__ = ["add_parser", "run", "parse_task_options", "add_train_flags", "print_metrics", "json_line"]


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_task_options(items: list[str] | None) -> dict[str, Any]:
    """``["high=999", "tgt_lang=fr"]`` -> ``{"high": 999, "tgt_lang": "fr"}``."""
    out: dict[str, Any] = {}
    for it in items or []:
        if "=" not in it:
            raise CliError(f"--task-option takes KEY=VALUE (e.g. high=999), got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip().replace("-", "_")] = _value(v)
    return out


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``train`` and ``compare``."""
    p.add_argument("--model", help="model from the registry (default: the task's, seq2seq for translation tasks)")
    p.add_argument("--decoder", help="seq2seq decoder style: bahdanau or luong (default bahdanau)")
    p.add_argument("--cell", help="seq2seq RNN cell: gru or lstm (default gru)")
    p.add_argument("--hidden-dim", type=int, help="hidden size D (default: tuned per task)")
    p.add_argument("--embed-dim", type=int, help="embedding size E (default: tuned per task)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="optimizer steps (default: tuned per task)")
    budget.add_argument("--minutes", type=float, help="wall-clock budget instead of --steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, data order and initialisation (default 0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's; 1 is often as fast for small RNNs)")
    p.add_argument("--batch-size", type=int, help="examples per step (default: tuned per task)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: tuned per task)")
    p.add_argument("--eval-every", type=int, help="validate every N steps")
    p.add_argument("--task-option", action="append", metavar="KEY=VALUE", help="task option, e.g. high=999 or tgt_lang=fr (repeatable)")
    p.add_argument("--json", action="store_true", help="print the final metrics as one JSON object on the last line")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on a task (numbers, dates, g2p, copy, reverse, sort, ...)", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", nargs="?", help="task name (attnkit.data.list_tasks())")
    p.add_argument("--attention", help="attention mechanism (attnkit.list_mechanisms()); default bahdanau")
    add_train_flags(p)
    p.add_argument("--out", help="run directory (default runs/TASK-ATTENTION-TIMESTAMP)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint")
    p.set_defaults(func=run)


def build(task_name: str, args: argparse.Namespace, *, attention: str | None) -> tuple[Any, Any]:
    """(task, model) from the command-line flags; sizes and training options come from attnkit.presets."""
    import torch

    from ..data import get_task
    from ..models import build_model, model_config_for_task
    from ..presets import default_model, model_options

    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            raise CliError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    task = get_task(task_name, seed=args.seed, **parse_task_options(args.task_option))
    name = args.model or default_model(task.name)
    flags = {"attention": attention, "decoder": args.decoder, "cell": args.cell, "hidden_dim": args.hidden_dim, "embed_dim": args.embed_dim}
    cfg = model_config_for_task(name, task, **model_options(task.name, name, **flags))
    torch.manual_seed(args.seed)  # the initialisation is part of the run: same seed, same model
    return task, build_model(cfg)


def json_line(obj: dict[str, Any]) -> str:
    """One JSON line; NaN/inf become null so any JSON parser reads it."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    return json.dumps({k: clean(v) for k, v in obj.items()})


#: metric -> (label, format) in the order they are printed
_SHOWN = {
    "exact_match": ("exact match", "{:.2%}"),
    "char_error_rate": ("character error rate", "{:.2%}"),
    "phoneme_error_rate": ("phoneme error rate (PER)", "{:.2%}"),
    "word_error_rate": ("word error rate (WER)", "{:.2%}"),
    "chrf": ("chrF", "{:.1f}"),
    "loss": ("loss", "{:.4f}"),
    "bits_per_char": ("bits per character", "{:.3f}"),
    "perplexity": ("perplexity", "{:.2f}"),
    "accuracy": ("accuracy", "{:.2%}"),
    "steps": ("steps", "{}"),
    "seconds": ("seconds", "{:.1f}"),
    "parameters": ("parameters", "{:,}"),
}


def print_metrics(result: dict[str, Any], *, title: str = "") -> None:
    if title:
        print(title)
    for k, (label, fmt) in _SHOWN.items():
        v = result.get(k)
        if isinstance(v, (int, float)):
            print(f"  {label:<26} {fmt.format(v)}")


def run(args: argparse.Namespace) -> int:
    from ..train import default_run_dir, resume_run, train

    if args.resume:
        if args.threads is not None:
            if args.threads < 1:
                raise CliError(f"--threads must be >= 1, got {args.threads}")
            import torch

            torch.set_num_threads(args.threads)
        if args.task:
            raise CliError("--resume RUN_DIR continues that run's task; drop the TASK argument")
        extra = {k: getattr(args, k) for k in ("steps", "minutes", "eval_every") if getattr(args, k) is not None}
        result = resume_run(args.resume, device=args.device, progress=None if not args.json else False, **extra)
    else:
        if not args.task:
            from ..data import list_tasks

            raise CliError(f"name a task: attnkit train TASK; tasks: {', '.join(list_tasks())}")
        task, model = build(args.task, args, attention=args.attention)
        out = args.out or default_run_dir(args.task, model.config.get("attention") or model.config.get("model"))
        if not args.json:
            print(f"training {model.config.get('model')} ({sum(p.numel() for p in model.parameters()):,} parameters) on {task!r} -> {out}")
        result = train(
            task, model, steps=args.steps, minutes=args.minutes, seed=args.seed, device=args.device, out_dir=out,
            batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every, progress=False if args.json else None,
        )
    if args.json:
        print(json_line(result))
    else:
        print_metrics(result, title=f"test metrics (best checkpoint) — run directory {result['run_dir']}")
    return 0
