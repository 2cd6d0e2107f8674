"""attnkit.viz: alignment heatmaps for the terminal and for files."""

from .heatmap import SHADES, alignment_grid, argmax_alignment, plot_alignments, span_alignment

__all__ = ["SHADES", "alignment_grid", "argmax_alignment", "plot_alignments", "span_alignment"]
