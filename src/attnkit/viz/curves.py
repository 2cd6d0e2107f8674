"""Training curves: the training loss and the validation metrics of a run, against the step.

A run directory's ``history.jsonl`` holds one JSON object per line; ``{"event": "train",
"step": s, "loss": ...}`` after every optimizer step and ``{"event": "valid", "step": s,
<metric>: ...}`` after every validation (:mod:`attnkit.train.loop`). :func:`read_history`
reads it; :func:`curves_figure` draws the training loss (each step, faint, and its moving
average over ``smooth`` steps) in the left panel and every validation metric in the right
one (``attnkit plot RUN_DIR``, the run report's ``curves.png``), in the look of
:mod:`attnkit.viz.style`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from . import style

__all__ = ["read_history", "moving_average", "curves_figure", "plot_curves", "VALID_SKIP"]

#: validation fields that are counts or bookkeeping, not metrics to draw
VALID_SKIP = frozenset({"event", "step", "tokens", "examples", "perplexity"})


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The events of a ``history.jsonl`` (a run directory or the file); a line cut by a crash is skipped."""
    p = Path(path)
    if p.is_dir():
        p = p / "history.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist; give a run directory written by attnkit train or demo")
    events = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a run killed while writing it
        if isinstance(e, dict):
            events.append(e)
    return events


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Mean of the last ``window`` values at each position (fewer at the start).

    >>> moving_average([1.0, 3.0, 5.0, 7.0], 2)
    [1.0, 2.0, 4.0, 6.0]
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _series(events: Sequence[dict[str, Any]]) -> tuple[list[int], list[float], dict[str, list[tuple[int, float]]]]:
    """(steps, training losses, metric -> [(step, value)]); a step run twice (resumed after a crash) keeps its last."""
    train: dict[int, float] = {}
    valid: dict[str, dict[int, float]] = {}
    for e in events:
        if not isinstance(e.get("step"), int):
            continue
        if e.get("event") == "train" and isinstance(e.get("loss"), (int, float)):
            train[e["step"]] = float(e["loss"])
        elif e.get("event") == "valid":
            for k, v in e.items():
                if k not in VALID_SKIP and isinstance(v, (int, float)) and not isinstance(v, bool):
                    valid.setdefault(k, {})[e["step"]] = float(v)
    steps = sorted(train)
    return steps, [train[s] for s in steps], {k: sorted(v.items()) for k, v in valid.items()}


def _is_rate(name: str) -> bool:
    return name in ("exact_match", "accuracy", "acc") or name.endswith("_error_rate")


def _valid_groups(valid: dict[str, list[tuple[int, float]]]) -> list[tuple[str, list[tuple[str, list]]]]:
    """(axis label, [(name, points)]) for rates (0..1) and for the other metrics (chrF, loss), each on its axis.

    A series equal to one already drawn joins its label (``char_error_rate = token_error_rate``).
    """
    drawn: list[tuple[str, list]] = []
    for name, pts in sorted(valid.items()):
        same = next((i for i, (_, p) in enumerate(drawn) if p == pts), None)
        if same is None:
            drawn.append((name, pts))
        else:
            drawn[same] = (f"{drawn[same][0]} = {name}", pts)
    rates = [(n, p) for n, p in drawn if all(_is_rate(x) for x in n.split(" = "))]
    other = [(n, p) for n, p in drawn if (n, p) not in rates]
    return [g for g in (("rate", rates), ("other metric (dashed)" if rates else "metric", other)) if g[1]]


def curves_figure(events: Sequence[dict[str, Any]], *, title: str = "training", smooth: int = 20) -> Any:
    """Training loss and validation metrics of ``events`` (:func:`read_history`) as a matplotlib Figure.

    Raises ValueError when the events hold neither a training loss nor a validation.
    """
    steps, loss, valid = _series(events)
    if not steps and not valid:
        raise ValueError("the history holds no training loss and no validation; train for a few steps first")
    plt = style.pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.2), sharex=True, layout="constrained")
    colours = plt.get_cmap(style.CMAP)
    if steps:
        left.plot(steps, loss, color=colours(0.75), alpha=0.35, linewidth=0.8, label="each step")
        left.plot(steps, moving_average(loss, smooth), color=colours(0.1), linewidth=1.6,
                  label=f"mean of {smooth} steps")
        left.legend(fontsize=style.FONT_SIZE)
    else:
        left.text(0.5, 0.5, "no training loss recorded", ha="center", va="center", transform=left.transAxes)
    left.set_title("training loss", fontsize=style.FONT_SIZE + 2)
    left.set_xlabel("step")
    left.set_ylabel("loss (nats per token)")
    groups = _valid_groups(valid)
    axes = [right] if len(groups) < 2 else [right, right.twinx()]
    k, handles = 0, []
    for ax, (ylabel, series) in zip(axes, groups):
        for name, pts in series:
            handles += ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", markersize=3,
                               linestyle="--" if ax is not right else "-",
                               color=colours(k / max(1, len(valid) - 1) * 0.85), label=name)
            k += 1
        ax.set_ylabel(ylabel)
        ax.tick_params(labelsize=style.FONT_SIZE)
    if handles:
        right.legend(handles=handles, fontsize=style.FONT_SIZE)
    else:
        right.text(0.5, 0.5, "no validation yet", ha="center", va="center", transform=right.transAxes)
    right.set_title("validation", fontsize=style.FONT_SIZE + 2)
    right.set_xlabel("step")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=style.FONT_SIZE)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # steps; one locator per axis
    fig.suptitle(f"{title}: training loss and validation metrics by step", fontsize=style.FONT_SIZE + 3)
    return fig


def plot_curves(events: Sequence[dict[str, Any]], path: str | Path, *, title: str = "training",
                smooth: int = 20) -> Path:
    """Save :func:`curves_figure` of ``events`` to ``path`` (.png/.svg/.pdf/.jpg); returns the path."""
    style.check_path(path)
    return style.save_figure(curves_figure(events, title=title, smooth=smooth), path)
