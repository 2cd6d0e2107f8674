"""attnkit.viz: alignment heatmaps for the terminal and for files, and grids of attention heads."""

from .heads import plot_heads, plot_heads_grid
from .heatmap import SHADES, alignment_grid, argmax_alignment, plot_alignments, span_alignment

__all__ = ["SHADES", "alignment_grid", "argmax_alignment", "plot_alignments", "span_alignment", "plot_heads",
           "plot_heads_grid"]
