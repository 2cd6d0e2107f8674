"""``attnkit ...`` (also ``python -m attnkit``).

One module per command under ``attnkit.cli``; each defines
``add_parser(subparsers)`` and sets ``func`` on its parser. Add a command by
adding its module to :data:`COMMANDS`. User errors (ValueError, TypeError,
FileNotFoundError) print one line and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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
}


class CliError(ValueError):
    """A user error found by the CLI itself (bad flag combination, unreadable file)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnkit", description="Neural attention: every mechanism, fast kernels, tools to see inside."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in COMMANDS.values():
        importlib.import_module(mod).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except (ValueError, TypeError, FileNotFoundError, IsADirectoryError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"attnkit {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"attnkit {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)
