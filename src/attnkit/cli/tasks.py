"""``attnkit tasks``: every task ``attnkit train TASK`` takes, with where its data come from and its size.

    attnkit tasks                 # name, data source, examples (or characters) per split, metric
    attnkit tasks numbers dates   # only these
    attnkit tasks --json

Each task is built with its default options to count its splits (a few seconds in all; the
data are generated or read from an installed package, never downloaded). A task whose
package is not installed is listed with the line that says what to install.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import CliError

__all__ = ["add_parser", "run", "task_rows"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="every task: data source, size of each split, metric",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="TASK", help="only these tasks (default: all)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=run)


def _sizes(task: Any) -> tuple[dict[str, int], str]:
    """Split -> size, and the unit counted: examples of a sequence-to-sequence task, characters of a text."""
    splits = getattr(task, "splits", None)
    if isinstance(splits, dict):
        return {k: len(v) for k, v in splits.items()}, "examples"
    data = getattr(task, "data", None)
    if isinstance(data, dict):
        return {k: int(v.numel()) for k, v in data.items()}, "characters"
    return {}, ""


def task_rows(names: list[str] | None = None) -> list[dict[str, Any]]:
    """One dict per task: name, source, sizes (split -> count), unit, metric, missing (the install line or None)."""
    from ..core.optional import OPTIONAL, MissingExtra
    from ..data import TASKS, get_task, list_tasks

    rows = []
    for name in names or list_tasks():
        TASKS.get(name)  # an unknown name: "unknown task 'x'; did you mean ...?"
        try:
            task = get_task(name)
        except MissingExtra as e:
            rows.append({"name": name, "source": f"the {OPTIONAL[e.module].distribution} package", "sizes": {},
                         "unit": "", "metric": None, "missing": str(e)})
            continue
        sizes, unit = _sizes(task)
        rows.append({"name": name, "source": task.source, "sizes": sizes, "unit": unit,
                     "metric": getattr(task, "primary_metric", None), "missing": None})
    return rows


def run(args: argparse.Namespace) -> int:
    from .list import text_table

    rows = task_rows(args.names or None)
    if not rows:
        raise CliError("no task is registered")
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    body = []
    for r in rows:
        size = (" / ".join(f"{v:,}" for v in r["sizes"].values()) + f" {r['unit']}") if r["sizes"] else "-"
        body.append([r["name"], r["source"], size, r["metric"] or "-"])
    print(text_table(["task", "data source", "train / valid / test", "metric"], body))
    for r in rows:
        if r["missing"]:
            print(f"{r['name']}: {r['missing']}")
    print("\nattnkit train TASK --task-option KEY=VALUE changes a task's options (sizes, lengths, languages).")
    return 0
