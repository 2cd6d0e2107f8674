"""``attnkit ...`` (also ``python -m attnkit``).

One module per command under ``attnkit.cli``; each defines
``add_parser(subparsers)`` and ``run(args)`` (set as ``func`` on its parser).
Add a command by adding its module to :data:`COMMANDS`; helpers the commands
share live in :mod:`attnkit.cli._common`. User errors (ValueError, TypeError,
FileNotFoundError) print one line and exit with status 2, never a traceback;
the Python arguments they name are shown as the command's flags. So does a missing
optional package (:class:`~attnkit.core.optional.MissingExtra`): its line names the extra to install.
Output piped into a reader that stops early (``attnkit list | head``) ends quietly (status 141).
An OSError (a full disk) exits 1 the same way. Under ``--json`` every failure, usage
errors included, also prints one JSON object ``{"error", "command", "exit_code"}``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..core.optional import MissingExtra
from ._common import ArgumentParser, CliError, as_flags, flags_of, report_failure, show_notices

__all__ = ["main", "COMMANDS", "CliError"]

#: command name -> module that defines it (imported when the parser is built).
COMMANDS: dict[str, str] = {
    "bench": "attnkit.cli.bench",
    "explain": "attnkit.cli.explain",
    "generate": "attnkit.cli.generate",
    "info": "attnkit.cli.info",
    "list": "attnkit.cli.list",
    "train": "attnkit.cli.train",
    "evaluate": "attnkit.cli.evaluate",
    "predict": "attnkit.cli.predict",
    "demo": "attnkit.cli.demo",
    "compare": "attnkit.cli.compare",
    "plot": "attnkit.cli.plot",
    "tasks": "attnkit.cli.tasks",
    "explore": "attnkit.cli.explore",
}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="attnkit", description="Neural attention: every mechanism, fast kernels, tools to see inside."
    )
    # the package root is imported before any of its submodules; cli/ may not import it by name (layers)
    parser.add_argument("--version", action="version", version=f"attnkit {sys.modules['attnkit'].__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in COMMANDS.values():
        importlib.import_module(mod).add_parser(sub)
    return parser


def _command_flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Python argument -> flag of the subcommand ``command``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return flags_of(action.choices[command])
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    show_notices()
    try:
        rc = args.func(args)
        sys.stdout.flush()  # a reader that went away (attnkit list | head) shows here, not at exit
    except BrokenPipeError:
        # the reader has all it wanted: no traceback, and no second error when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command whose reader closed the pipe
    except (ValueError, TypeError, FileNotFoundError, IsADirectoryError, MissingExtra) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return report_failure(args, as_flags(msg, _command_flags(parser, args.command)), 2)
    except OSError as e:  # the machine, not the user: a full disk, a permission
        return report_failure(args, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, 1)
    except KeyboardInterrupt:
        return report_failure(args, "interrupted", 130, error=False)
    return int(rc or 0)
