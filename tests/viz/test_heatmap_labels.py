"""The end token has one label: the vocabulary's ``</s>``, in the terminal grid and in the picture."""

from __future__ import annotations

import pytest
import torch

from attnkit.viz.heatmap import alignment_grid, plot_alignments

matplotlib = pytest.importorskip("matplotlib")


def test_end_token_label_is_the_same_in_grid_and_picture(tmp_path):
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    rows, cols = ["a", "</s>"], ["x", " "]
    assert "</s>" in alignment_grid(w, rows, cols)
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG
        path = plot_alignments([(w, rows, cols)], tmp_path / "a.svg")
    svg = path.read_text(encoding="utf-8")
    assert "&lt;/s&gt;" in svg and "EOS" not in svg
    assert "␣" in svg  # the space is still drawn visibly
