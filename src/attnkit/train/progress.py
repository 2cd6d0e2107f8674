"""A one-line progress bar: step, loss, accuracy, tokens/s, ETA, drawn by tqdm.

tqdm draws the bar, keeps it to one line, and writes validation lines above it
(:meth:`Progress.log`). The bar is drawn on a terminal only: under ``--json`` or
when the stream is not a TTY (CI logs, pipes) it stays silent, so
machine-readable output stays clean. The loss and accuracy shown are moving
averages (``avg = 0.9 avg + 0.1 x``); the ETA comes from the step budget, or from
the time budget (``minutes``) when there is no step budget.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["Progress", "format_seconds"]


def format_seconds(s: float) -> str:
    """``format_seconds(125) == "2:05"``, ``format_seconds(3725) == "1:02:05"``."""
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """``Progress(total_steps, minutes=None, enabled=None)``, then ``update(step, metrics)``, ``log()``, ``close()``.

    ``enabled=None`` draws only when ``stream`` (default stderr) is a terminal. ``total`` is the
    step budget (None: none); ``minutes`` the time budget, which fills the bar when there is no
    step budget. ``width`` is the bar's width in characters.
    """

    def __init__(
        self,
        total: int | None,
        *,
        minutes: float | None = None,
        enabled: bool | None = None,
        stream: TextIO | None = None,
        width: int = 24,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = bool(self.stream.isatty()) if enabled is None else enabled
        self.total = total
        self.budget = minutes * 60 if minutes else None
        self.t0 = time.perf_counter()
        self.tokens = 0.0
        self.avg: dict[str, float] = {}
        scale = total or (round(self.budget) if self.budget else None)  # what fills the bar
        fmt = (f"{{bar:{width}}} " if scale else "") + "{desc}"
        self.drawn = False
        self.bar = tqdm(total=scale, file=self.stream, disable=not self.enabled, bar_format=fmt, mininterval=0.2,
                        leave=True, dynamic_ncols=True)

    def update(self, step: int, metrics: dict[str, float], *, start_step: int = 0, note: str = "") -> None:
        """Record step ``step``'s ``metrics`` (loss, acc, tokens); redraw every 0.2 s at most, or now with a note."""
        for k in ("loss", "acc"):
            if k in metrics:
                self.avg[k] = metrics[k] if k not in self.avg else 0.9 * self.avg[k] + 0.1 * metrics[k]
        self.tokens += metrics.get("tokens", 0.0)
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        done = step - start_step
        if self.total:
            eta, position = elapsed / max(done, 1) * (self.total - step), min(step, self.total)
        elif self.budget:
            eta, position = self.budget - elapsed, min(elapsed, self.budget)
        else:
            eta, position = 0.0, step
        parts = []
        if "loss" in self.avg:
            parts.append(f"loss {self.avg['loss']:.3f}")
        if "acc" in self.avg:
            parts.append(f"acc {self.avg['acc']:.1%}")
        if self.tokens:
            parts.append(f"{self.tokens / max(elapsed, 1e-9):,.0f} tok/s")
        parts.append(f"ETA {format_seconds(max(eta, 0.0))}")
        if note:
            parts.append(note)
        text = f"{step}" + (f"/{self.total}" if self.total else "")
        self.bar.set_description_str("  ".join([text, *parts]), refresh=False)
        if note or not self.drawn:  # the first step and notes are drawn at once
            self.bar.n = position
            self.bar.refresh()
            self.drawn = True
        else:
            self.bar.update(position - self.bar.n)  # tqdm redraws when mininterval has passed

    def close(self) -> None:
        """End the bar's line (nothing when disabled)."""
        self.bar.close()

    def log(self, message: Any) -> None:
        """A line above the bar (validation results); silent when disabled."""
        if self.enabled:
            self.bar.write(str(message), file=self.stream)
