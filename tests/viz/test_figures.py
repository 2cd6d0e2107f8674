"""The pictures read on a slide: colour bar, perceptual colour map, horizontal token labels, a title, a
slide-sized figure, and the GPT heads as a (layers x heads) grid (issue 12, section 4).

Before: a grey map with no colour bar, x labels rotated 90 degrees, no figure title, and the heads
of one layer as a strip of 40-token panels 5,588 x 1,364 pixels (50.8 x 12.4 in at 110 dpi).
"""

from __future__ import annotations

import pytest
import torch

from attnkit.viz import alignment_figure, heads_figure, plot_alignments, plot_heads, style

matplotlib = pytest.importorskip("matplotlib")

SLIDE_W, SLIDE_H = style.SLIDE_INCHES


def _softmax(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.softmax(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def _colorbars(fig) -> list:
    return [im.colorbar for ax in fig.axes for im in ax.images if im.colorbar is not None]


def _heatmaps(fig) -> list:
    return [ax for ax in fig.axes if ax.images]


def _labels(ax, axis: str) -> list[str]:
    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [t.get_text() for t in ticks]


def test_alignment_figure_style_by_hand():
    w = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5]])
    fig = alignment_figure([(w, ["d", "</s>"], ["a", " ", "b"])], titles=["ab -> d"])
    try:
        (ax,) = _heatmaps(fig)
        assert ax.images[0].get_cmap().name == style.CMAP == "viridis"
        assert ax.images[0].get_clim() == (0.0, pytest.approx(0.9))  # 0 to the largest weight shown
        (bar,) = _colorbars(fig)
        assert bar.ax.get_ylabel() == "attention weight"
        assert _labels(ax, "x") == ["a", "␣", "b"] and _labels(ax, "y") == ["d", "</s>"]
        assert all(t.get_rotation() == 0 for t in ax.get_xticklabels() + ax.get_yticklabels())
        assert ax.get_title() == "ab -> d" and "output token" in fig.get_suptitle()
        w_in, h_in = fig.get_size_inches()
        assert 4.0 <= w_in <= SLIDE_W and 3.0 <= h_in <= SLIDE_H
    finally:
        style.pyplot().close(fig)


def test_many_tokens_still_fit_a_slide_and_labels_are_thinned_not_rotated():
    n = 120
    toks = [f"t{i}" for i in range(n)]
    fig = alignment_figure([(_softmax(n, n), toks, toks)] * 3, cols_per_row=3)
    try:
        w_in, h_in = fig.get_size_inches()
        assert w_in <= SLIDE_W and h_in <= SLIDE_H
        ax = _heatmaps(fig)[0]
        shown = _labels(ax, "x")
        step = int(ax.get_xticks()[1] - ax.get_xticks()[0])
        assert 1 < step and shown == toks[::step]  # every step-th token, its own text
        assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())
        assert len(_colorbars(fig)) == 1  # one bar for the shared scale
    finally:
        style.pyplot().close(fig)


def test_gpt_heads_are_a_layers_by_heads_grid_that_fits_a_slide():
    layers, heads, n = 4, 4, 40  # the README's baby GPT, 40 plotted characters
    maps = [_softmax(heads, n, n, seed=i) for i in range(layers)]
    toks = list("ROMEO:\nWhat light through yonder window ")[:n]
    fig = heads_figure(maps, toks, title="gpt self-attention")
    try:
        grid = _heatmaps(fig)
        assert len(grid) == layers * heads
        geometry = {ax.get_subplotspec().get_geometry()[:2] for ax in grid}
        assert geometry == {(layers, heads)}  # rows: layers, columns: heads
        assert grid[5].get_title() == "layer 1 · head 1"
        w_in, h_in = fig.get_size_inches()
        assert w_in <= SLIDE_W and h_in <= SLIDE_H
        assert len(_colorbars(fig)) == 1 and grid[0].images[0].get_cmap().name == "viridis"
        bottom_left = next(ax for ax in grid if ax.get_title() == "layer 3 · head 0")
        for axis in ("x", "y"):
            ticks = (bottom_left.get_xticks() if axis == "x" else bottom_left.get_yticks()).astype(int).tolist()
            assert _labels(bottom_left, axis) == [style.token_label(toks[i]) for i in ticks] and ticks[0] == 0
        inner = next(ax for ax in grid if ax.get_title() == "layer 1 · head 2")
        assert set(_labels(inner, "x")) == {""} and set(_labels(inner, "y")) == {""}  # outer panels carry the labels
        assert "gpt self-attention" in fig.get_suptitle() and "layers 0-3" in fig.get_suptitle()
    finally:
        style.pyplot().close(fig)


def test_saved_pictures_are_slide_sized(tmp_path):
    from PIL import Image

    p = plot_heads([_softmax(4, 40, 40, seed=i) for i in range(4)], list("x" * 40), tmp_path / "h.png")
    with Image.open(p) as im:
        assert im.size[0] <= SLIDE_W * style.DPI + 1 and im.size[1] <= SLIDE_H * style.DPI + 1
    q = plot_alignments([(_softmax(3, 4), list("abc"), list("wxyz"))], tmp_path / "a.png", title="mine")
    assert q.read_bytes()[:4] == b"\x89PNG"


def test_bad_inputs_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match=r"path='a.txt': use a .png"):
        plot_alignments([(_softmax(2, 2), list("ab"), list("cd"))], "a.txt")
    with pytest.raises(ValueError, match=r"expected \(heads, L, S\)"):
        heads_figure(torch.zeros(4, 4), list("abcd"))
    with pytest.raises(ValueError, match=r"layers=\[1\] names 1 layer\(s\) but weights hold 2"):
        heads_figure(torch.zeros(2, 1, 2, 2), list("ab"), layers=[1])
    with pytest.raises(ValueError, match="items is empty"):
        alignment_figure([])


@pytest.mark.parametrize("name", ["attnkit.viz.style", "attnkit.viz.curves", "attnkit.train.report"])
def test_docstring_examples(name):
    import doctest
    import importlib

    res = doctest.testmod(importlib.import_module(name))
    assert res.attempted > 0 and res.failed == 0


def test_moving_average_and_the_curves_by_hand():
    from attnkit.viz import curves_figure, moving_average

    assert moving_average([2.0, 4.0, 6.0], 3) == [2.0, 3.0, 4.0]
    events = [{"event": "train", "step": 1, "loss": 3.0}, {"event": "train", "step": 2, "loss": 2.0},
              {"event": "valid", "step": 2, "exact_match": 0.5, "token_error_rate": 0.25, "chrf": 40.0},
              {"event": "train", "step": 2, "loss": 1.5},  # step 2 again after a resume: the last one counts
              {"event": "done", "steps": 2}]
    fig = curves_figure(events, smooth=2)
    try:
        left, right = fig.axes[:2]
        assert list(left.lines[0].get_xdata()) == [1, 2] and list(left.lines[0].get_ydata()) == [3.0, 1.5]
        assert list(left.lines[1].get_ydata()) == [3.0, 2.25]
        labels = {ln.get_label() for ax in fig.axes for ln in ax.lines}
        assert {"exact_match", "token_error_rate", "chrf"} <= labels  # chrF on its own (twin) axis
        assert any("chrf" in {ln.get_label() for ln in ax.lines} for ax in fig.axes[2:])
    finally:
        style.pyplot().close(fig)
    with pytest.raises(ValueError, match="no training loss and no validation"):
        curves_figure([{"event": "done"}])


def test_the_saved_alignment_picture_itself_has_the_style(tmp_path, monkeypatch):
    """Through the old entry point (plot_alignments), catching the Figure matplotlib saves: before, a 'Greys' map,
    x labels rotated 90 degrees, no colour bar and no figure title."""
    from matplotlib.figure import Figure

    caught = []
    real = Figure.savefig

    def spy(self, *a, **kw):
        caught.append(self)
        return real(self, *a, **kw)

    monkeypatch.setattr(Figure, "savefig", spy)
    w = torch.tensor([[0.7, 0.3], [0.1, 0.9]])
    plot_alignments([(w, ["x", "</s>"], ["a", "b"])], tmp_path / "a.png", titles=["ab -> x"])
    (fig,) = caught
    (ax,) = _heatmaps(fig)
    assert ax.images[0].get_cmap().name == "viridis" and len(_colorbars(fig)) == 1
    assert [t.get_rotation() for t in ax.get_xticklabels()] == [0, 0] and fig.get_suptitle()
