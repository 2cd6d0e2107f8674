"""attnkit.viz: alignment heatmaps for the terminal and for files, grids of attention heads, training curves,
attention over images (glimpse paths, spatial maps, channel weights per class) and the HTML explorer.

Every picture shares the look of :mod:`attnkit.viz.style` (colour map, colour bar, titles,
horizontal token labels, a slide-sized figure); the ``*_figure`` functions return the
matplotlib Figure, the ``plot_*`` functions save it. :func:`explore` writes one self-contained HTML page.
"""

from . import style
from .curves import curves_figure, moving_average, plot_curves, read_history
from .explore import AttentionLayer, BlockMaps, Explorer, ExplorerData, GlimpsePath, ImageAttention, explore
from .heads import heads_figure, plot_heads, plot_heads_grid
from .heatmap import SHADES, alignment_figure, alignment_grid, argmax_alignment, plot_alignments, span_alignment
from .vision import glimpse_boxes, plot_image_attention

__all__ = ["SHADES", "alignment_grid", "alignment_figure", "argmax_alignment", "plot_alignments", "span_alignment",
           "heads_figure", "plot_heads", "plot_heads_grid", "curves_figure", "plot_curves", "read_history",
           "moving_average", "style", "AttentionLayer", "Explorer", "ExplorerData", "explore",
           "ImageAttention", "GlimpsePath", "BlockMaps",
           "plot_image_attention", "glimpse_boxes"]
