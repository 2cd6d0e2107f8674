"""Alignment pictures: a shaded grid for the terminal and a matplotlib heatmap.

Rows are output tokens, columns input tokens, and cell (t, s) shades the
weight α_ts the decoder gave input s when it wrote output t — the figure of
Bahdanau et al. 2014 (arXiv:1409.0473, Fig. 3). The matplotlib pictures share
the look of :mod:`attnkit.viz.style` (viridis, one colour bar, horizontal token labels,
a slide-sized figure).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from . import style

__all__ = ["SHADES", "alignment_grid", "alignment_figure", "plot_alignments", "argmax_alignment", "span_alignment"]

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


def alignment_figure(
    items: Sequence[tuple[Tensor, Sequence[str], Sequence[str]]],
    *,
    titles: Sequence[str] | None = None,
    cols_per_row: int = 2,
    title: str = "Attention weights α_ts: output token t (rows) over input token s (columns)",
) -> Any:
    """One heatmap per (weights (T, S), output tokens, input tokens), as a matplotlib Figure.

    The panels share one colour scale (0 to the largest weight), one colour bar and the figure
    title ``title``; each panel is titled by ``titles[k]``. Tick labels are the tokens, horizontal
    (:mod:`attnkit.viz.style`); the figure fits a slide.
    """
    if not items:
        raise ValueError("items is empty; give at least one (weights, outputs, inputs) item")
    if cols_per_row < 1:
        raise ValueError(f"cols_per_row must be >= 1, got {cols_per_row}")
    checked = [(_check(w, rows, cols), rows, cols) for w, rows, cols in items]
    plt = style.pyplot()
    n = len(checked)
    ncols = min(cols_per_row, n)
    nrows = -(-n // ncols)
    max_rows = max(len(r) for _, r, _ in checked)
    max_cols = max(len(c) for _, _, c in checked)
    label_chars = max(len(style.token_label(t)) for _, r, _ in checked for t in r)
    size = style.slide_size(nrows, ncols, max_rows, max_cols, label_chars=label_chars)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False, layout="constrained")
    vmax = max(float(w.max()) for w, _, _ in checked) or 1.0
    room = (size[0] / ncols * 0.75, size[1] / nrows * 0.7)
    image, used = None, []
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        w, rows, cols = checked[k]
        image = style.draw_heatmap(ax, w.numpy(), xlabels=cols, ylabels=rows, vmax=vmax, room=room,
                                   title=titles[k] if titles is not None and k < len(titles) else "",
                                   xlabel="input", ylabel="output")
        used.append(ax)
    style.add_colorbar(fig, image, used)
    fig.suptitle(title, fontsize=style.FONT_SIZE + 3)
    return fig


def plot_alignments(
    items: Sequence[tuple[Tensor, Sequence[str], Sequence[str]]],
    path: str | Path,
    *,
    titles: Sequence[str] | None = None,
    cols_per_row: int = 2,
    title: str | None = None,
) -> Path:
    """Save :func:`alignment_figure` of ``items`` to ``path`` (PNG, SVG, PDF, JPG); returns the path.

    Uses matplotlib's Agg backend (no display needed); without matplotlib it raises
    :class:`~attnkit.core.optional.MissingExtra` (``pip install 'attnkit[viz]'``).
    """
    style.check_path(path)
    kw = {} if title is None else {"title": title}
    return style.save_figure(alignment_figure(items, titles=titles, cols_per_row=cols_per_row, **kw), path)


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
