"""attnkit.viz: alignment heatmaps for the terminal and for files, grids of attention heads, and attention over
images (glimpse paths, spatial maps, channel weights per class)."""

from .heads import plot_heads, plot_heads_grid
from .heatmap import SHADES, alignment_grid, argmax_alignment, plot_alignments, span_alignment
from .vision import glimpse_boxes, plot_image_attention

__all__ = ["SHADES", "alignment_grid", "argmax_alignment", "plot_alignments", "span_alignment", "plot_heads",
           "plot_heads_grid", "plot_image_attention", "glimpse_boxes"]
