"""The one look of attnkit's pictures: colour map, colour bar, titles, tick labels and a slide-sized figure.

Every heatmap of :mod:`attnkit.viz` (alignments, head grids, and the vision overlays built on
this module) is drawn through these helpers, so they all read the same way:

- a perceptual colour map, :data:`CMAP` (viridis: lightness grows with the value, readable in
  grey and by colour-blind readers), from 0 to the largest weight shown;
- one colour bar per figure, labelled with what the colour measures (:func:`add_colorbar`);
- a figure title (``suptitle``) that says what is plotted, and a title per panel;
- tick labels that are the token text, horizontal, thinned to every k-th token where they
  would overlap (:func:`token_ticks`);
- a figure that fits a 16:9 slide (:data:`SLIDE_INCHES`), however many tokens or panels
  (:func:`slide_size`), saved at :data:`DPI`.

A figure builder returns a :class:`matplotlib.figure.Figure` (so tests and notebooks can look
at it); :func:`save_figure` writes it. matplotlib is optional (``pip install 'attnkit[viz]'``):
:func:`pyplot` raises :class:`~attnkit.core.optional.MissingExtra` without it.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from ..core.optional import require

__all__ = ["CMAP", "SLIDE_INCHES", "DPI", "FONT_SIZE", "SUFFIXES", "check_path", "pyplot", "slide_size", "token_label",
           "token_ticks", "draw_heatmap", "add_colorbar", "save_figure"]

#: the colour map of every heatmap (perceptually uniform)
CMAP = "viridis"
#: the largest figure, in inches: a 16:9 slide
SLIDE_INCHES = (13.33, 7.5)
#: dots per inch of saved raster pictures (a full-slide figure is 2000 x 1125 pixels)
DPI = 150
#: tick label size in points
FONT_SIZE = 8.0
#: file types :func:`save_figure` writes
SUFFIXES = (".png", ".svg", ".pdf", ".jpg")

_CHAR_INCHES = 0.6 * FONT_SIZE / 72  # the width of one character of a tick label
_CELL_INCHES = 0.24  # a token's cell at full size, before the figure is scaled to the slide


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (no display needed), or MissingExtra naming ``attnkit[viz]``."""
    matplotlib = require("matplotlib", purpose="plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def slide_size(nrows: int, ncols: int, rows_per_panel: int, cols_per_panel: int, *,
               label_chars: int = 1, colorbar: bool = True) -> tuple[float, float]:
    """(width, height) in inches of ``nrows`` x ``ncols`` panels of ``rows_per_panel`` x ``cols_per_panel`` cells.

    Each cell gets 0.24 in, each panel room for its labels and title; the whole is scaled down
    (aspect kept) to fit :data:`SLIDE_INCHES` and never drawn smaller than 4 x 3 in.

    >>> slide_size(1, 1, 5, 5)
    (4.0, 3.0)
    >>> w, h = slide_size(4, 4, 40, 40); w <= 13.33 and h <= 7.5
    True
    """
    label = 0.25 + _CHAR_INCHES * max(1, label_chars)
    pw = cols_per_panel * _CELL_INCHES + label
    ph = rows_per_panel * _CELL_INCHES + 0.45  # x labels and the panel's title
    w = ncols * pw + (0.9 if colorbar else 0.2)
    h = nrows * ph + 0.6  # the figure title
    scale = min(1.0, SLIDE_INCHES[0] / w, SLIDE_INCHES[1] / h)
    return (round(max(4.0, w * scale), 2), round(max(3.0, h * scale), 2))


def token_label(tok: Any) -> str:
    """A token as a tick label: a space is drawn as ``␣``, a newline as ``⏎``; ``</s>`` stays ``</s>``."""
    s = str(tok)
    return {" ": "␣", "\n": "⏎", "\t": "⇥"}.get(s, s)


def token_ticks(ax: Any, axis: str, tokens: Sequence[Any], *, room_inches: float, show: bool = True) -> None:
    """Token text as horizontal tick labels on ``axis`` ("x" or "y") of ``ax``, every k-th where they would overlap.

    ``room_inches`` is the length of that axis on the page; k is the smallest step at which
    the labels (each as wide as the longest, on x; one line high, on y) fit it. ``show=False``
    keeps the ticks and hides the labels (inner panels of a grid).
    """
    n = len(tokens)
    labels = [token_label(t) for t in tokens]
    if axis == "x":
        need = max((len(s) for s in labels), default=1) * _CHAR_INCHES + 0.04
    else:
        need = FONT_SIZE * 1.25 / 72
    step = max(1, math.ceil(n * need / max(room_inches, 1e-6)))
    ticks = list(range(0, n, step))
    setter = ax.set_xticks if axis == "x" else ax.set_yticks
    setter(ticks)
    shown = [labels[i] for i in ticks] if show else [""] * len(ticks)
    if axis == "x":
        ax.set_xticklabels(shown, rotation=0, fontsize=FONT_SIZE)
    else:
        ax.set_yticklabels(shown, rotation=0, fontsize=FONT_SIZE)


def draw_heatmap(ax: Any, weights: Any, *, xlabels: Sequence[Any], ylabels: Sequence[Any], title: str = "",
                 vmax: float = 1.0, room: tuple[float, float] = (4.0, 3.0), show_x: bool = True,
                 show_y: bool = True, xlabel: str | None = None, ylabel: str | None = None) -> Any:
    """Draw the 2-D ``weights`` (rows = ``ylabels``, columns = ``xlabels``) on ``ax`` in :data:`CMAP`, 0..``vmax``.

    ``room`` is the panel's (width, height) in inches, which decides how many tick labels fit;
    ``show_x`` / ``show_y`` hide the labels of inner panels. Returns the image (for
    :func:`add_colorbar`).
    """
    image = ax.imshow(weights, cmap=CMAP, vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest")
    token_ticks(ax, "x", xlabels, room_inches=room[0], show=show_x)
    token_ticks(ax, "y", ylabels, room_inches=room[1], show=show_y)
    ax.tick_params(length=2, pad=1)
    if xlabel and show_x:
        ax.set_xlabel(xlabel, fontsize=FONT_SIZE + 1)
    if ylabel and show_y:
        ax.set_ylabel(ylabel, fontsize=FONT_SIZE + 1)
    if title:
        ax.set_title(title, fontsize=FONT_SIZE + 1)
    return image


def add_colorbar(fig: Any, image: Any, axes: Sequence[Any], *, label: str = "attention weight") -> Any:
    """One colour bar for every panel in ``axes`` (they share ``image``'s colour scale), labelled ``label``."""
    bar = fig.colorbar(image, ax=list(axes), shrink=0.9, fraction=0.04, pad=0.02)
    bar.set_label(label, fontsize=FONT_SIZE + 1)
    bar.ax.tick_params(labelsize=FONT_SIZE)
    return bar


def check_path(path: str | Path, *, name: str = "path") -> Path:
    """``path`` as a Path when its suffix is one :func:`save_figure` writes; else ValueError naming ``name``.

    Commands call it before any work, so a bad file name fails at once (``name="plot"`` is ``--plot``).
    """
    p = Path(path)
    if p.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{name}={str(path)!r}: use a .png, .svg, .pdf or .jpg file name")
    return p


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (.png/.svg/.pdf/.jpg; folders created) at :data:`DPI` and close it."""
    path = check_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=DPI)
    finally:
        pyplot().close(fig)
    return path
