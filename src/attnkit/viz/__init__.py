"""attnkit.viz: alignment heatmaps for the terminal and for files, grids of attention heads, and the HTML explorer."""

from .explore import AttentionLayer, Explorer, ExplorerData, explore
from .heads import plot_heads, plot_heads_grid
from .heatmap import SHADES, alignment_grid, argmax_alignment, plot_alignments, span_alignment

__all__ = ["SHADES", "alignment_grid", "argmax_alignment", "plot_alignments", "span_alignment", "plot_heads",
           "plot_heads_grid", "AttentionLayer", "Explorer", "ExplorerData", "explore"]
