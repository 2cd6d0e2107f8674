"""A one-line progress bar: step, loss, accuracy, tokens/s, ETA.

Drawn with ``\\r`` on a terminal only; under ``--json`` or when the stream is
not a TTY (CI logs, pipes) it stays silent, so machine-readable output stays clean.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress", "format_seconds"]


def format_seconds(s: float) -> str:
    """``format_seconds(125) == "2:05"``, ``format_seconds(3725) == "1:02:05"``."""
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """``Progress(total_steps, minutes=None, enabled=None)``; call ``update(step, metrics)``."""

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
        self.width = width
        self.t0 = time.perf_counter()
        self.last_draw = 0.0
        self.tokens = 0.0
        self.avg: dict[str, float] = {}

    def update(self, step: int, metrics: dict[str, float], *, start_step: int = 0, note: str = "") -> None:
        for k in ("loss", "acc"):
            if k in metrics:
                self.avg[k] = metrics[k] if k not in self.avg else 0.9 * self.avg[k] + 0.1 * metrics[k]
        self.tokens += metrics.get("tokens", 0.0)
        now = time.perf_counter()
        if not self.enabled or (now - self.last_draw < 0.2 and not note):
            return
        self.last_draw = now
        elapsed = now - self.t0
        done = step - start_step
        if self.total:
            frac = step / self.total
            eta = elapsed / max(done, 1) * (self.total - step)
        elif self.budget:
            frac, eta = elapsed / self.budget, self.budget - elapsed
        else:
            frac, eta = 0.0, 0.0
        frac = min(max(frac, 0.0), 1.0)
        bar = "█" * int(frac * self.width) + "·" * (self.width - int(frac * self.width))
        parts = [f"{step}" + (f"/{self.total}" if self.total else "")]
        if "loss" in self.avg:
            parts.append(f"loss {self.avg['loss']:.3f}")
        if "acc" in self.avg:
            parts.append(f"acc {self.avg['acc']:.1%}")
        if self.tokens:
            parts.append(f"{self.tokens / max(elapsed, 1e-9):,.0f} tok/s")
        parts.append(f"ETA {format_seconds(eta)}")
        if note:
            parts.append(note)
        self.stream.write(f"\r{bar} " + "  ".join(parts) + "\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def log(self, message: Any) -> None:
        """A line above the bar (validation results); silent when disabled."""
        if self.enabled:
            self.stream.write(f"\r\x1b[K{message}\n")
            self.stream.flush()
