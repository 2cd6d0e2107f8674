"""Helpers every ``attnkit`` command shares: the user-error type, Python arguments named as flags,
the training flags and how they build a (task, model), and how results are printed.

The library names Python arguments in its errors (``device='tpu'``, ``lr must be > 0``); the
CLI shows the flag the user typed (``--device tpu``, ``--lr must be > 0``). :func:`as_flags` is
the one place that translation happens.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
from typing import Any, Mapping

__all__ = [
    "CliError",
    "ArgumentParser",
    "flags_of",
    "as_flags",
    "parse_task_options",
    "add_train_flags",
    "set_threads",
    "plot_layers",
    "build",
    "json_line",
    "print_metrics",
    "run_dir_error",
    "report_failure",
    "show_notices",
]


class CliError(ValueError):
    """A user error found by the CLI itself (bad flag combination, unreadable file)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser; a usage error under ``--json`` also prints one JSON object with it on stdout."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._json = "--json" in (sys.argv[1:] if args is None else list(args))
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> Any:
        if getattr(self, "_json", False):
            command = self.prog.split()[-1] if " " in self.prog else None
            print(json.dumps({"error": message, "command": command, "exit_code": 2}))
        return super().error(message)


# -- Python arguments -> flags ----------------------------------------------------------------------
def flags_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Python argument name -> the long flag that sets it (``{"batch_size": "--batch-size"}``)."""
    out: dict[str, str] = {}
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs and action.dest not in ("help", argparse.SUPPRESS):
            out[action.dest] = longs[0]
    return out


_VALUE = r"""(?:'([^']*)'|"([^"]*)"|([^\s,;:)]+))"""


def as_flags(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with the Python arguments that have a flag written as that flag.

    ``name=VALUE`` becomes ``--flag VALUE`` (a quoted string loses its quotes) and ``name must``
    at the start of a clause becomes ``--flag must``; other words are left alone.

    >>> as_flags("device='tpu': use device='cpu'; lr must be > 0", {"device": "--device", "lr": "--lr"})
    '--device tpu: use --device cpu; --lr must be > 0'
    """
    for name, flag in flags.items():
        if name not in message:
            continue
        message = re.sub(rf"(?<![\w.-]){re.escape(name)}={_VALUE}",
                         lambda m, flag=flag: f"{flag} {next(g for g in m.groups() if g is not None)}", message)
        message = re.sub(rf"(^|; ){re.escape(name)}(?= must\b)", rf"\g<1>{flag}", message)
    return message


# -- the training flags -----------------------------------------------------------------------------
def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_task_options(items: list[str] | None, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``["high=999", "tgt_lang=fr"]`` -> ``{"high": 999, "tgt_lang": "fr"}``.

    Values are read as JSON (numbers, true/false, lists), except for an option whose default in
    ``defaults`` (the task's options) is a string: it keeps the text as typed (``alphabet=123`` -> ``"123"``).
    """
    out: dict[str, Any] = {}
    for it in items or []:
        if "=" not in it:
            raise CliError(f"--task-option takes KEY=VALUE (e.g. high=999), got {it!r}")
        k, v = it.split("=", 1)
        k = k.strip().replace("-", "_")
        out[k] = v if defaults is not None and isinstance(defaults.get(k), str) else _value(v)
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
    p.add_argument("--seed", type=int, help="seed of the data split, data order and initialisation (default 0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int,
                   help="CPU threads for torch (default: torch's; 1 is often as fast for small RNNs)")
    p.add_argument("--batch-size", type=int, help="examples per step (default: tuned per task)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: tuned per task)")
    p.add_argument("--eval-every", type=int, help="validate every N steps")
    p.add_argument("--task-option", action="append", metavar="KEY=VALUE",
                   help="task option, e.g. high=999 or tgt_lang=fr (repeatable)")
    p.add_argument("--force", action="store_true",
                   help="train into a run directory that already holds a run, deleting it")
    p.add_argument("--json", action="store_true", help="print the final metrics as one JSON object on the last line "
                   "(on failure: one JSON object with the error)")


def set_threads(threads: int | None) -> None:
    """``--threads N``: torch's CPU threads (None: leave torch's default)."""
    if threads is None:
        return
    if threads < 1:
        raise CliError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def plot_layers(layer: int | None, num_layers: int) -> list[int]:
    """``--layer``: every layer when None, else the one named (negative counts from the end)."""
    if layer is None:
        return list(range(num_layers))
    chosen = layer if layer >= 0 else num_layers + layer
    if not 0 <= chosen < num_layers:
        raise CliError(f"--layer {layer}: the model has {num_layers} layers (0..{num_layers - 1}, or -1 for the last)")
    return [chosen]


def build(task_name: str, args: argparse.Namespace, *, attention: str | None) -> tuple[Any, Any]:
    """(task, model) from the command-line flags; sizes and tuned fields come from :mod:`attnkit.presets`."""
    import torch

    from ..data import get_task, task_option_defaults
    from ..models import build_model, model_config_for_task
    from ..presets import default_model, model_options

    set_threads(getattr(args, "threads", None))
    seed = 0 if args.seed is None else args.seed
    task = get_task(task_name, seed=seed, **parse_task_options(args.task_option, task_option_defaults(task_name)))
    asked = args.model or default_model(task.name)
    sized = model_config_for_task(asked, task)  # checks the name and that the model fits the task
    name = sized["model"] if isinstance(sized, Mapping) else getattr(sized, "model", asked)  # an alias -> its name
    fields = model_options(task.name, name, attention=attention, decoder=args.decoder, cell=args.cell,
                           hidden_dim=args.hidden_dim, embed_dim=args.embed_dim)
    cfg = model_config_for_task(name, task, **fields)
    torch.manual_seed(seed)  # the initialisation is part of the run: same seed, same model
    return task, build_model(cfg)


# -- printing results -------------------------------------------------------------------------------
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
    """The metrics of a result dict one per line, labelled, in a fixed order."""
    if title:
        print(title)
    for k, (label, fmt) in _SHOWN.items():
        v = result.get(k)
        if isinstance(v, (int, float)):
            print(f"  {label:<26} {fmt.format(v)}")


# -- failures -------------------------------------------------------------------------------------
def run_dir_error(e: Any) -> CliError:
    """A :class:`attnkit.train.lock.RunDirectoryError` in the words of the command line."""
    d = e.run_dir
    if e.reason == "holds_run":
        return CliError(f"{d} already holds a run ({', '.join(e.files)}); continue it with "
                        f"`attnkit train --resume {d}`, replace it with --force, or choose another --out")
    if e.reason == "not_a_directory":
        return CliError(f"--out {d} is not a directory (it or a parent is a file); give a directory for the run")
    return CliError(str(e))


def report_failure(args: argparse.Namespace, message: str, code: int, *, error: bool = True) -> int:
    """Print a failure as one line on stderr and, under ``--json``, as one JSON object on stdout; return ``code``."""
    print(f"attnkit {args.command}: {'error: ' if error else ''}{message}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "command": args.command, "exit_code": code}))
    return code


# -- notices ----------------------------------------------------------------------------------------
class _Stderr(logging.Handler):
    """Writes each record as ``attnkit: MESSAGE`` to the sys.stderr of the moment (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"attnkit: {record.getMessage()}", file=sys.stderr)
        except Exception:  # noqa: BLE001  (logging's rule: a handler never raises)
            self.handleError(record)


def show_notices() -> None:
    """Print the library's INFO notices (``attnkit.compile``: a first torch.compile takes seconds) on stderr.

    Installed once per process; the library logs each notice once per process, so a command
    shows it on one line, once.
    """
    log = logging.getLogger("attnkit.compile")
    if not any(isinstance(h, _Stderr) for h in log.handlers):
        log.addHandler(_Stderr())
        log.setLevel(logging.INFO)
        log.propagate = True  # the application's own handlers (and pytest's caplog) see it too
