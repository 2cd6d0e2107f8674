"""``attnkit plot RUN_DIR``: the training loss and validation curves of a run, as a picture.

    attnkit plot runs/numbers                    # -> runs/numbers/curves.png
    attnkit plot runs/demo-latest -o curves.svg  # .png, .svg, .pdf or .jpg

Reads ``RUN_DIR/history.jsonl`` (one ``train`` event per step with its loss, one ``valid``
event per validation; written by ``attnkit train`` and ``attnkit demo``) and draws the
training loss (each step and its moving average over ``--smooth`` steps) beside every
validation metric, against the step. Works on a run that is still training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import CliError, json_line

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw a run's training loss and validation curves (history.jsonl) to a picture",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory written by attnkit train / demo")
    p.add_argument("-o", "--output", help="picture to write (default RUN_DIR/curves.png)")
    p.add_argument("--smooth", type=int, default=20, help="moving average of the training loss over N steps "
                   "(default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON object: the picture and what it holds")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import resolve_run_dir
    from ..viz import plot_curves, read_history
    from ..viz.style import check_path

    if args.smooth < 1:
        raise CliError(f"--smooth must be >= 1, got {args.smooth}")
    run_dir = resolve_run_dir(args.run_dir)
    if not run_dir.is_dir():
        raise CliError(f"{args.run_dir} is not a run directory; give the --out of attnkit train or demo")
    out = Path(args.output) if args.output else run_dir / "curves.png"
    check_path(out, name="output")
    events = read_history(run_dir)
    path = plot_curves(events, out, title=run_dir.resolve().name, smooth=args.smooth)
    steps = sum(1 for e in events if e.get("event") == "train")
    valid = sum(1 for e in events if e.get("event") == "valid")
    if args.json:
        print(json_line({"plot": str(path), "train_steps": steps, "validations": valid}))
    else:
        print(f"training loss of {steps} steps and {valid} validations saved to {path}")
    return 0
