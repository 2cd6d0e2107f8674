"""Head grids: every head of one multi-head attention layer (Vaswani et al. 2017, arXiv:1706.03762)
drawn as its own heatmap, ``α_h = softmax(Q_h K_hᵀ / √E)`` for h = 1..H.

:func:`plot_heads` draws the self-attention of a language model (GPT) or an encoder (BERT)
over its own characters as a grid, one row per layer and one column per head
(``attnkit generate --plot``, ``attnkit predict --plot`` on a BERT run, the run report);
:func:`plot_heads_grid` the cross-attention of one decoder layer of an encoder-decoder
Transformer, one row of heads per input (``attnkit predict --layer N --plot``). Both use the
look of :mod:`attnkit.viz.style`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from . import style

__all__ = ["heads_figure", "plot_heads", "plot_heads_grid"]


def _config_value(model: Any, key: str) -> Any:
    """``model.config[key]`` whether the config is a dict or a dataclass."""
    cfg = model.config
    return cfg[key] if isinstance(cfg, Mapping) else getattr(cfg, key)


def _as_layers(weights: Tensor | Sequence[Tensor], layers: int | Sequence[int] | None) -> tuple[Tensor, list[int]]:
    """(N, H, L, S) float weights and the N layer numbers of ``weights`` (one (H, L, S) layer or N of them)."""
    w = torch.stack([torch.as_tensor(x) for x in weights]) if isinstance(weights, (list, tuple)) else weights
    w = torch.as_tensor(w, dtype=torch.float32).detach().cpu()
    if w.dim() == 3:
        w = w.unsqueeze(0)  # (1, H, L, S)
    if w.dim() != 4:
        raise ValueError(f"weights have shape {tuple(w.shape)}; expected (heads, L, S) for one layer or "
                         "(layers, heads, L, S)")
    if layers is None:
        nums = list(range(w.shape[0]))
    else:
        nums = [layers] if isinstance(layers, int) else list(layers)
    if len(nums) != w.shape[0]:
        raise ValueError(f"layers={layers!r} names {len(nums)} layer(s) but weights hold {w.shape[0]}")
    return w, nums


def heads_figure(weights: Tensor | Sequence[Tensor], tokens: Sequence[str], *,
                 layers: int | Sequence[int] | None = None, keys: Sequence[str] | None = None,
                 title: str = "self-attention") -> Any:
    """A grid of heatmaps, one row per layer and one column per head, as a matplotlib Figure.

    ``weights`` is (H, L, S) for one layer or (N, H, L, S) (or a list of N (H, L, S)) for N
    layers, numbered ``layers`` (default 0..N-1); rows are the query ``tokens``, columns the
    ``keys`` (default: the same tokens). Token labels are drawn on the outer panels only; the
    panels share one colour scale and colour bar; the figure fits a slide.
    """
    w, nums = _as_layers(weights, layers)
    keys = list(tokens) if keys is None else list(keys)
    n_layers, n_heads, L, S = w.shape
    if (L, S) != (len(tokens), len(keys)):
        raise ValueError(f"weights are {L} x {S} per head but {len(tokens)} tokens and {len(keys)} keys were given")
    plt = style.pyplot()
    size = style.slide_size(n_layers, n_heads, L, S, label_chars=max((len(style.token_label(t)) for t in tokens),
                                                                     default=1))
    fig, axes = plt.subplots(n_layers, n_heads, figsize=size, squeeze=False, layout="constrained")
    room = (size[0] / n_heads * 0.8, size[1] / n_layers * 0.7)
    vmax = float(w.max()) or 1.0
    image = None
    for i in range(n_layers):
        for h in range(n_heads):
            ax = axes[i, h]
            image = style.draw_heatmap(ax, w[i, h].numpy(), xlabels=keys, ylabels=tokens, vmax=vmax, room=room,
                                       show_x=i == n_layers - 1, show_y=h == 0,
                                       title=f"layer {nums[i]} · head {h}")
    style.add_colorbar(fig, image, axes.ravel().tolist())
    fig.suptitle(f"{title}: rows attend to columns, every head of "
                 + (f"layer {nums[0]}" if n_layers == 1 else f"layers {nums[0]}-{nums[-1]}"
                    if nums == list(range(nums[0], nums[-1] + 1)) else "layers " + ", ".join(map(str, nums))),
                 fontsize=style.FONT_SIZE + 3)
    return fig


def plot_heads(weights: Tensor | Sequence[Tensor], tokens: Sequence[str], path: str | Path, *,
               layers: int | Sequence[int] | None = None, title: str = "self-attention") -> str:
    """Save :func:`heads_figure` (rows: layers, columns: heads) of ``weights`` over ``tokens`` to ``path``."""
    style.check_path(path)
    return str(style.save_figure(heads_figure(weights, tokens, layers=layers, title=title), path))


def plot_heads_grid(model: Any, task: Any, texts: Sequence[str], outputs: Sequence[Sequence[str]], layer: int,
                    path: str | Path) -> str:
    """Every cross-attention head of decoder layer ``layer`` (negative counts from the end), one row per input.

    ``outputs[i]`` are the tokens the model wrote for ``texts[i]``; the maps are recomputed by
    teacher-forcing them (``model.cross_attention_maps``).
    """
    n_layers = _config_value(model, "decoder_layers")
    li = layer if layer >= 0 else n_layers + layer
    if not 0 <= li < n_layers:
        raise ValueError(f"layer={layer}: the decoder has {n_layers} layers (0..{n_layers - 1}, or -1 for the last)")
    style.check_path(path)
    device = next(model.parameters()).device
    maps, labels = [], []
    for text, toks in zip(texts, outputs):
        ids = task.encode_source(text)
        src = torch.tensor([ids], device=device)  # (1, S)
        m = model.cross_attention_maps(src, torch.tensor([len(ids)], device=device),
                                       [task.tgt_vocab.stoi[t] for t in toks])[li]  # (H, T+1, S)
        maps.append(m.detach().float().cpu())
        labels.append(([*toks, "</s>"], task.src_vocab.tokens(task.normalize(text))))
    plt = style.pyplot()
    n_heads = maps[0].shape[0]
    T = max(m.shape[1] for m in maps)
    S = max(m.shape[2] for m in maps)
    size = style.slide_size(len(maps), n_heads, T, S, label_chars=max(len(style.token_label(t))
                                                                        for rows, _ in labels for t in rows))
    fig, axes = plt.subplots(len(maps), n_heads, figsize=size, squeeze=False, layout="constrained")
    room = (size[0] / n_heads * 0.8, size[1] / len(maps) * 0.7)
    vmax = max(float(m.max()) for m in maps) or 1.0
    image = None
    for r, (text, m, (rows, cols)) in enumerate(zip(texts, maps, labels)):
        for h in range(n_heads):
            image = style.draw_heatmap(axes[r, h], m[h].numpy(), xlabels=cols, ylabels=rows, vmax=vmax, room=room,
                                       show_y=h == 0, title=f"{text} · head {h}")
    style.add_colorbar(fig, image, axes.ravel().tolist())
    fig.suptitle(f"cross-attention of decoder layer {li}: output tokens (rows) over input tokens (columns), "
                 "every head", fontsize=style.FONT_SIZE + 3)
    return str(style.save_figure(fig, path))
