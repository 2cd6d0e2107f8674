"""``attnkit train TASK``: train a registered model on a registered task.

    attnkit train numbers --attention bahdanau --steps 3000 --out runs/numbers
    attnkit train g2p --attention local-p --decoder luong --minutes 30
    attnkit train --resume runs/numbers --steps 5000      # continue, exactly

A progress bar (loss, accuracy, tokens/s, ETA) is drawn on a terminal;
``--json`` prints the final metrics as one JSON object on the last line.
The run directory holds ``best.json``/``last.json`` with their safetensors,
``history.jsonl`` (the loss of every step, every validation), ``metrics.json``,
and ``report.md`` with its pictures (``curves.png``; ``alignments.png`` or
``heads.png``), the same report ``attnkit demo`` writes. It is locked while the run lasts; a
directory that already holds a run is refused unless ``--resume`` (continue it)
or ``--force`` (delete it and start afresh).

``--resume RUN_DIR`` continues the run with its saved task, model and options: it
applies ``--steps``/``--minutes`` (the new budget), ``--decay-steps`` (a new
horizon for the learning-rate schedule, from the current step), ``--eval-every``,
``--device``, ``--threads`` and ``--json``, and refuses the flags that would make
it another run (``--lr``, ``--batch-size``, ``--attention``, ``--model``, sizes,
``--task-option``, ``--seed``, ``--out``, ``--force``). The schedule belongs to
the run: ``--steps N --decay-steps 2N`` resumed with ``--steps 2N`` gives the
weights of ``--steps 2N`` in one run; without ``--decay-steps`` the steps past N
run at the final learning rate.

``--nproc N`` trains on N processes with DDP (torchrun's elastic agent is started for you; the
same as ``torchrun --standalone --nproc-per-node N -m attnkit train ...``): gloo on CPU, NCCL on
CUDA (one device per process). ``--batch-size`` is then the global batch, all processes
together, each training on its contiguous slice of every batch, so a run gives the weights of a
one-process run of the same flags and resumes with any number of processes
(``--resume RUN_DIR --nproc M``). Rank 0 alone prints, validates and writes the run directory.
``--fsdp`` shards a Transformer's parameters, gradients and Adam moments instead (FSDP2); its
checkpoints are the same files (gathered on rank 0), plus each rank's shards in ``last.dcp/``.
``--context-parallel C`` (gpt) splits every sequence across groups of C consecutive processes
(ring attention, zigzag layout): N processes are N / C data shards of C; the loss is still the
mean over every token of the global batch, and the checkpoints are the usual ones (resume them
with any C, or on one process).
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from ._common import (
    CliError,
    add_train_flags,
    build,
    json_line,
    print_metrics,
    report_failure,
    run_dir_error,
    set_threads,
)

__all__ = ["add_parser", "run", "FIXED_ON_RESUME"]

#: flags that would make a resumed run another run: ``--resume`` refuses them
FIXED_ON_RESUME = {"lr": "--lr", "batch_size": "--batch-size", "attention": "--attention", "model": "--model",
                   "decoder": "--decoder", "cell": "--cell", "hidden_dim": "--hidden-dim", "embed_dim": "--embed-dim",
                   "task_option": "--task-option", "seed": "--seed", "force": "--force"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on a task (numbers, dates, g2p, copy, reverse, sort, ...)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", nargs="?", help="task name (attnkit.data.list_tasks())")
    p.add_argument("--attention", help="seq2seq: an attention mechanism (default bahdanau); transformer/gpt/bert: "
                   "a score or local (the table: attnkit list)")
    add_train_flags(p)
    p.add_argument("--decay-steps", type=int, help="steps over which the learning rate decays (default: --steps); "
                   "give the final budget to train it in parts with --resume")
    p.add_argument("--out", dest="out_dir", help="run directory (default runs/TASK-ATTENTION-TIMESTAMP)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint")
    p.add_argument("--nproc", type=int, metavar="N", help="train on N processes (DDP; starts torchrun's elastic "
                   "agent); --batch-size is then the global batch")
    p.add_argument("--fsdp", action="store_true", help="with --nproc/torchrun: shard a Transformer's parameters, "
                   "gradients and Adam moments across the processes (FSDP2) instead of copying them (DDP)")
    p.add_argument("--context-parallel", type=int, metavar="C", help="with --nproc/torchrun: groups of C "
                   "processes share every sequence (ring attention, zigzag layout; gpt); C divides the processes")
    p.set_defaults(func=run)
    _PARSER[:] = [p]


_PARSER: list[argparse.ArgumentParser] = []  # the train parser, which worker command lines are rebuilt from


def _worker_argv(args: argparse.Namespace, out: str | None) -> list[str]:
    """The flags of ``args`` as a command line for the workers: the same run, without ``--nproc``."""
    argv: list[str] = []
    for action in _PARSER[0]._actions:
        dest, value = action.dest, getattr(args, action.dest, None)
        if dest in ("help", "nproc", "out_dir") or value is None or value is False:
            continue
        if not action.option_strings:
            argv.append(str(value))
        elif isinstance(action, argparse._StoreTrueAction):
            argv.append(action.option_strings[-1])
        elif isinstance(action, argparse._AppendAction):
            for v in value:
                argv += [action.option_strings[-1], str(v)]
        else:
            argv += [action.option_strings[-1], str(value)]
    return ["-m", "attnkit", "train", *argv, *(["--out", out] if out else [])]


def _launch(args: argparse.Namespace) -> int:
    """``--nproc N``: torchrun's elastic agent runs this command on N processes."""
    from ..train import default_run_dir, model_config, model_name
    from ..train.context_parallel import check_context_parallel, check_size, check_world
    from ..train.distributed import RankFailed, check_nproc, launch
    from ..train.sharded import transformer_layers

    check_nproc(args.nproc, args.device)
    cp = args.context_parallel
    if cp is not None:  # before N processes start (every rank checks again)
        check_world(check_size(cp), args.nproc)
    if args.resume:
        _refuse_fixed(args)
        out = args.resume
    else:
        if not args.task:
            raise CliError("name a task: attnkit train TASK --nproc N")
        task, model = build(args.task, args, attention=args.attention)  # the flags are checked before N processes start
        if args.fsdp and not transformer_layers(model):
            raise CliError(f"--fsdp shards the layers of a Transformer model (gpt, bert, transformer); the "
                           f"{model_name(model)!r} model has none: drop --fsdp (DDP keeps a copy on every process)")
        if args.context_parallel is not None:  # before N processes start; their world checks follow here
            check_context_parallel(model, task, args.context_parallel)
        tag = model_config(model).get("attention") or model_name(model)
        out = str(args.out_dir or default_run_dir(args.task, tag))
    if not args.json:
        how = "FSDP2" if args.fsdp else "DDP" if not cp or cp == 1 else f"DDP, sequences split across {cp} processes"
        print(f"starting {args.nproc} processes (torchrun's elastic agent, {how}) -> {out}")
    try:
        return launch(args.nproc, _worker_argv(args, None if args.resume else out), device=args.device, run_dir=out,
                      resume_hint=f"attnkit train --resume {out} --nproc {args.nproc}")
    except RankFailed as e:
        return report_failure(args, str(e), 1)


def _refuse_fixed(args: argparse.Namespace) -> None:
    """``--resume`` with a flag it cannot honour: one error naming all of them."""
    given = [flag for dest, flag in FIXED_ON_RESUME.items() if getattr(args, dest, None) not in (None, False, [])]
    if args.out_dir is not None and Path(args.out_dir).resolve() != Path(args.resume).resolve():
        given.append("--out")
    if given:
        raise CliError(f"--resume continues {args.resume} with its saved task, model and options; drop "
                       f"{', '.join(given)} (to change them, start a new run with --out)")


def run(args: argparse.Namespace) -> int:
    from ..train.distributed import FromMain, setup, torchrun_env

    if args.nproc is not None:
        if torchrun_env() is not None:
            raise CliError("--nproc starts torchrun's agent itself; under torchrun drop it (--nproc-per-node sets it)")
        return _launch(args)
    main = setup(args.device).is_main  # under torchrun: the process group; only rank 0 prints
    try:
        return _run(args, main)
    except FromMain:  # rank 0 failed and reports it; the other ranks end quietly
        return 2


def _run(args: argparse.Namespace, main: bool) -> int:
    from ..train import default_run_dir, load_run, model_config, model_name, resolve_run_dir, resume_run, train
    from ..train.lock import RunDirectoryError, RunLock
    from ..train.report import write_report

    if args.resume:
        set_threads(args.threads)
        args.resume = str(resolve_run_dir(args.resume))  # runs/demo-latest, a link or a pointer file
        if args.task:
            raise CliError("--resume RUN_DIR continues that run's task; drop the TASK argument")
        _refuse_fixed(args)
        applied = ("steps", "minutes", "eval_every", "decay_steps")
        extra = {k: getattr(args, k) for k in applied if getattr(args, k) is not None}
        extra["fsdp"] = args.fsdp
        if args.context_parallel is not None:  # any C resumes: the checkpoints are those of one process
            extra["context_parallel"] = args.context_parallel
        try:  # held across resume_run, so its first read of last.json cannot race a live writer
            with RunLock(args.resume) if main and Path(args.resume).is_dir() else contextlib.nullcontext():
                result = resume_run(args.resume, device=args.device, progress=None if not args.json else False, **extra)
        except RunDirectoryError as e:
            raise run_dir_error(e) from None
    else:
        if not args.task:
            from ..data import list_tasks

            raise CliError(f"name a task: attnkit train TASK; tasks: {', '.join(list_tasks())}")
        task, model = build(args.task, args, attention=args.attention)
        out = args.out_dir or default_run_dir(args.task, model_config(model).get("attention") or model_name(model))
        if not args.json and main:
            n = sum(p.numel() for p in model.parameters())
            print(f"training {model_name(model)} ({n:,} parameters) on {task!r} -> {out}")
        try:
            result = train(
                task, model, steps=args.steps, minutes=args.minutes, seed=args.seed or 0, device=args.device,
                out_dir=out, force=args.force, batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every,
                decay_steps=args.decay_steps, progress=False if args.json else None, fsdp=args.fsdp,
                context_parallel=args.context_parallel or 1,
            )
        except RunDirectoryError as e:
            raise run_dir_error(e) from None
    if not main:
        return 0
    if args.resume:
        task, model, _ = load_run(result["run_dir"], device=args.device)  # the best weights, as train() ends
    written = write_report(result["run_dir"], task, model, result)  # the demo's report, for every run
    if args.json:
        print(json_line({**result, "report": written["report"]}))
    else:
        print_metrics(result, title=f"test metrics (best checkpoint) — run directory {result['run_dir']}")
        pictures = "".join(f", {Path(p).name}" for p in written["pictures"])
        print(f"wrote {written['report']}{pictures}" + (f" (no pictures: {written['missing']})"
                                                         if written["missing"] else ""))
    return 0
