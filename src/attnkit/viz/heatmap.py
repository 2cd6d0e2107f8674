"""Alignment pictures: a shaded grid for the terminal and a matplotlib heatmap.

Rows are output tokens, columns input tokens, and cell (t, s) shades the
weight α_ts the decoder gave input s when it wrote output t — the figure of
Bahdanau et al. 2014 (arXiv:1409.0473, Fig. 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from ..core.optional import require

__all__ = ["SHADES", "alignment_grid", "plot_alignments", "argmax_alignment", "span_alignment"]

#: light to dark, one character per fifth of the weight
SHADES = " ░▒▓█"


def _check(weights: Tensor, rows: Sequence[str], cols: Sequence[str]) -> Tensor:
    w = torch.as_tensor(weights, dtype=torch.float32)
    if w.dim() != 2 or w.shape != (len(rows), len(cols)):
        raise ValueError(f"weights have shape {tuple(w.shape)}; "
                         f"expected (outputs, inputs) = ({len(rows)}, {len(cols)})")
    return w


def argmax_alignment(weights: Tensor, rows: Sequence[str], cols: Sequence[str]) -> list[tuple[str, str]]:
    """(output token, the input token it attends to most) for every output row."""
    w = _check(weights, rows, cols)
    return [(r, cols[int(i)]) for r, i in zip(rows, w.argmax(dim=1).tolist())]


def alignment_grid(weights: Tensor, rows: Sequence[str], cols: Sequence[str], *, shades: str = SHADES) -> str:
    """A text heatmap: input tokens across the top (written vertically), outputs down the side.

    >>> print(alignment_grid(torch.tensor([[0.0, 1.0], [1.0, 0.5]]), ["x", "y"], ["a", "b"]))
      ab
    x  █
    y █▒
    """
    w = _check(weights, rows, cols)
    label = max((len(r) for r in rows), default=0)
    height = max((len(c) for c in cols), default=0)
    lines = []
    for i in range(height):  # column labels, one character per row, top-aligned
        lines.append(" " * (label + 1) + "".join(c[i] if i < len(c) else " " for c in (str(x) for x in cols)))
    top = len(shades) - 1
    for r, row in zip(rows, w.clamp(0, 1).tolist()):
        cells = "".join(shades[min(top, int(round(x * top)))] for x in row)
        lines.append(f"{str(r).rjust(label)} {cells}")
    return "\n".join(lines)


def _label(tok: str) -> str:
    return "␣" if tok == " " else tok  # the end token keeps the vocabulary's "</s>", as in the grid


def plot_alignments(
    items: Sequence[tuple[Tensor, Sequence[str], Sequence[str]]],
    path: str | Path,
    *,
    titles: Sequence[str] | None = None,
    cols_per_row: int = 2,
) -> Path:
    """Save one heatmap per (weights (T, S), output tokens, input tokens) to ``path`` (PNG, SVG, PDF).

    Uses matplotlib's Agg backend (no display needed); without matplotlib it raises
    :class:`~attnkit.core.optional.MissingExtra` (``pip install 'attnkit[viz]'``).
    """
    matplotlib = require("matplotlib", purpose="plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not items:
        raise ValueError("plot_alignments needs at least one (weights, outputs, inputs) item")
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf", ".jpg"):
        raise ValueError(f"--plot {path}: use a .png, .svg, .pdf or .jpg file name")
    n = len(items)
    ncols = min(cols_per_row, n)
    nrows = -(-n // ncols)
    sizes = [(max(3.0, 0.28 * len(cols) + 1.5), max(2.5, 0.28 * len(rows) + 1.2)) for _, rows, cols in items]
    fw = max(s[0] for s in sizes) * ncols
    fh = max(s[1] for s in sizes) * nrows
    fig, axes = plt.subplots(nrows, ncols, figsize=(fw, fh), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        w, rows, cols = items[k]
        w = _check(w, rows, cols)
        ax.imshow(w.numpy(), cmap="Greys", vmin=0.0, vmax=1.0, aspect="equal")
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels([_label(c) for c in cols], rotation=90, fontsize=8)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([_label(r) for r in rows], fontsize=8)
        ax.set_xlabel("input")
        ax.set_ylabel("output")
        if titles is not None and k < len(titles):
            ax.set_title(titles[k], fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def span_alignment(weights: Tensor, row_spans: dict[str, tuple[int, int]],
                   col_spans: dict[str, tuple[int, int]]) -> dict[str, str]:
    """Which column span each row span attends to: the argmax of the summed block weights.

    For characters grouped into words: ``span_alignment(w, {"drei": (0, 4), "vierzig":
    (7, 14)}, {"forty": (0, 5), "three": (6, 11)}) == {"drei": "three", "vierzig": "forty"}``
    when the model reorders as German does.
    """
    w = torch.as_tensor(weights, dtype=torch.float32)
    if not col_spans:
        raise ValueError("col_spans is empty; give at least one (start, end) input span")
    out = {}
    for rname, (r0, r1) in row_spans.items():
        if not 0 <= r0 < r1 <= w.shape[0]:
            raise ValueError(f"row span {rname!r} = ({r0}, {r1}) is outside the {w.shape[0]} output rows")
        mass = {c: float(w[r0:r1, c0:c1].sum()) for c, (c0, c1) in col_spans.items()}
        out[rname] = max(mass, key=mass.get)
    return out
