"""Pictures of attention over images: glimpse paths, spatial attention maps, channel weights per class.

* Glimpse paths (Mnih et al. 2014, arXiv:1406.6247, Fig. 3): the image with each glimpse's retina
  patches drawn as squares around its centre, numbered in the order they were taken and coloured by
  step, the centres joined by the path.
* Spatial attention (Woo et al. 2018, arXiv:1807.06521, CBAM): the map ``σ(conv([mean_c; max_c]))``
  over the image, as a colour overlay with its scale.
* Channel weights per class (Hu et al. 2018, arXiv:1709.01507, Fig. 6): the mean excitation
  ``σ(W_2 δ(W_1 GAP(u)))`` of each channel over the images of each class.

:func:`plot_image_attention` draws any of the three into one file. Tensors in, a file out: the
caller (``attnkit predict RUN_DIR --plot out.png``) runs the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from ..core.optional import require

__all__ = ["plot_image_attention", "glimpse_boxes"]

_SUFFIXES = (".png", ".svg", ".pdf", ".jpg")


def glimpse_boxes(centres: Tensor, sizes: Sequence[int]) -> list[list[tuple[float, float, float]]]:
    """For each glimpse t of ``centres`` (T, 2) pixel (x, y): the squares (left, top, side) of its patches,
    in imshow's pixel coordinates (pixel i spans i - 0.5 .. i + 0.5)."""
    c = torch.as_tensor(centres, dtype=torch.float32)
    if c.dim() != 2 or c.shape[1] != 2:
        raise ValueError(f"centres must be (T, 2) pixel coordinates (x, y), got {tuple(c.shape)}")
    return [[(float(x) - s / 2, float(y) - s / 2, float(s)) for s in sizes] for x, y in c.tolist()]


def _check_images(images: Tensor, n: int | None = None, name: str = "images") -> Tensor:
    x = torch.as_tensor(images, dtype=torch.float32).detach().cpu()
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]  # (N, H, W)
    if x.dim() != 3:
        raise ValueError(f"{name} must be (N, H, W) or (N, 1, H, W) grey images, got {tuple(x.shape)}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{name} has {x.shape[0]} images; expected {n}, one per image")
    return x


def plot_image_attention(
    path: str | Path,
    images: Tensor,
    *,
    titles: Sequence[str] | None = None,
    glimpses: tuple[Tensor, Sequence[int]] | None = None,
    spatial: Tensor | None = None,
    channel: tuple[Tensor, Sequence[str]] | None = None,
    suptitle: str = "",
) -> Path:
    """Save one figure to ``path`` (PNG, SVG, PDF, JPG): a row of ``images`` (N, H, W) with, on each,

    * ``glimpses = (centres (N, T, 2) pixel (x, y), patch sides)``: the numbered glimpse path;

    below it ``spatial`` (N, h, w) in [0, 1]: each image's spatial attention map (upsampled to the image,
    the digit's outline drawn over it), and below that ``channel = (weights (K, C), class names)``: the
    channel weights per class, on the colour scale of their own range (they often sit close to 1).
    Uses matplotlib's Agg backend; without matplotlib :class:`~attnkit.core.optional.MissingExtra`.
    """
    matplotlib = require("matplotlib", purpose="plotting")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colors, patches

    path = Path(path)
    if path.suffix.lower() not in _SUFFIXES:
        raise ValueError(f"--plot {path}: use a .png, .svg, .pdf or .jpg file name")
    x = _check_images(images)
    n, H, W = x.shape
    if n < 1:
        raise ValueError("plot_image_attention needs at least one image")
    rows = 1 + (spatial is not None) + (channel is not None)
    fig = plt.figure(figsize=(max(2.4 * n + 1.2, 7.0), 2.9 * rows + 0.4))
    grid = fig.add_gridspec(rows, n + 1, width_ratios=[1.0] * n + [0.06], hspace=0.45, wspace=0.15)
    scale = None
    if glimpses is not None:
        centres, sizes = glimpses
        centres = torch.as_tensor(centres, dtype=torch.float32).cpu()
        if centres.dim() != 3 or centres.shape[0] != n or centres.shape[2] != 2:
            raise ValueError(f"glimpse centres must be (N, T, 2) = ({n}, T, 2), got {tuple(centres.shape)}")
        T = centres.shape[1]
        cmap = plt.get_cmap("plasma", max(T, 2))
        scale = matplotlib.cm.ScalarMappable(norm=colors.BoundaryNorm(range(1, T + 2), cmap.N), cmap=cmap)
        label = "glimpse number (in order)"
    if spatial is not None:
        maps = torch.as_tensor(spatial, dtype=torch.float32).detach().cpu()
        maps = maps[:, 0] if maps.dim() == 4 else maps
        if maps.dim() != 3 or maps.shape[0] != n:
            raise ValueError(f"spatial maps must be (N, h, w) with N = {n}, got {tuple(maps.shape)}")
        maps = torch.nn.functional.interpolate(maps.unsqueeze(1), size=(H, W), mode="nearest")[:, 0]  # (N, H, W)
    for i in range(n):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(x[i].numpy(), cmap="gray", vmin=0.0, vmax=max(1.0, float(x[i].max())), interpolation="nearest")
        if glimpses is not None:
            path_xy = centres[i]
            ax.plot(path_xy[:, 0].numpy(), path_xy[:, 1].numpy(), "-", color="white", lw=0.8, alpha=0.7)
            for t, squares in enumerate(glimpse_boxes(path_xy, sizes)):
                col = cmap(t)
                for k, (left, top, side) in enumerate(squares):
                    ax.add_patch(patches.Rectangle((left, top), side, side, fill=False, edgecolor=col,
                                                   lw=1.8 if k == 0 else 0.8, ls="-" if k == 0 else "--"))
                ax.text(float(path_xy[t, 0]), float(path_xy[t, 1]), str(t + 1), color="white", fontsize=8,
                        ha="center", va="center", fontweight="bold",
                        bbox={"boxstyle": "circle,pad=0.15", "fc": col, "ec": "none", "alpha": 0.9})
        ax.set_xlim(-0.5, W - 0.5)
        ax.set_ylim(H - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None and i < len(titles):
            ax.set_title(titles[i], fontsize=9)
        if spatial is not None:
            ax = fig.add_subplot(grid[1, i])
            im = ax.imshow(maps[i].numpy(), cmap="inferno", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.contour(x[i].numpy(), levels=[0.35], colors="cyan", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title("spatial attention", fontsize=8)
    if scale is not None:
        cb = fig.colorbar(scale, cax=fig.add_subplot(grid[0, n]))
        cb.set_label(label, fontsize=8)
        cb.set_ticks([t + 1.5 for t in range(T)], labels=[str(t + 1) for t in range(T)])
    if spatial is not None:
        cb = fig.colorbar(im, cax=fig.add_subplot(grid[1, n]))
        cb.set_label("weight (cyan: the digit's outline)", fontsize=8)
    if channel is not None:
        w, names = channel
        w = torch.as_tensor(w, dtype=torch.float32).detach().cpu()
        if w.dim() != 2 or w.shape[0] != len(names):
            raise ValueError(f"channel weights must be (classes, channels) with {len(names)} classes, "
                             f"got {tuple(w.shape)}")
        ax = fig.add_subplot(grid[rows - 1, :n])
        im = ax.imshow(w.numpy(), cmap="viridis", aspect="auto", interpolation="nearest")
        ax.set_yticks(range(len(names)), labels=list(names), fontsize=8)
        ax.set_ylabel("class")
        ax.set_xlabel("channel of the last block")
        ax.set_title("channel weights per class (mean over the test images of each class)", fontsize=9)
        cb = fig.colorbar(im, cax=fig.add_subplot(grid[rows - 1, n]))
        cb.set_label("channel weight σ(·)", fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
