"""Head grids: every head of one multi-head attention layer (Vaswani et al. 2017, arXiv:1706.03762)
drawn as its own heatmap, ``α_h = softmax(Q_h K_hᵀ / √E)`` for h = 1..H.

:func:`plot_heads` draws the (H, L, L) self-attention of a language model over its own
characters (``attnkit generate --plot``); :func:`plot_heads_grid` the cross-attention of
one decoder layer of an encoder-decoder Transformer, one row of heads per input
(``attnkit predict --layer N --plot``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from .heatmap import plot_alignments

__all__ = ["plot_heads", "plot_heads_grid"]


def _config_value(model: Any, key: str) -> Any:
    """``model.config[key]`` whether the config is a dict or a dataclass."""
    cfg = model.config
    return cfg[key] if isinstance(cfg, Mapping) else getattr(cfg, key)


def plot_heads(weights: Tensor, tokens: Sequence[str], path: str | Path, *, layer: int, title: str = "") -> str:
    """Save (H, L, L) self-attention weights as one heatmap per head, ``tokens`` on both axes."""
    items = [(weights[h], tokens, tokens) for h in range(weights.shape[0])]
    titles = [f"{title}layer {layer}, head {h}" for h in range(weights.shape[0])]
    return str(plot_alignments(items, path, titles=titles, cols_per_row=min(4, len(items))))


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
    items, titles = [], []
    device = next(model.parameters()).device
    for text, toks in zip(texts, outputs):
        ids = task.encode_source(text)
        src = torch.tensor([ids], device=device)  # (1, S)
        maps = model.cross_attention_maps(src, torch.tensor([len(ids)], device=device),
                                          [task.tgt_vocab.stoi[t] for t in toks])[li]  # (H, T+1, S)
        rows, cols = [*toks, "</s>"], task.src_vocab.tokens(task.normalize(text))
        for h in range(maps.shape[0]):
            items.append((maps[h], rows, cols))
            titles.append(f"{text} · layer {li} head {h}")
    return str(plot_alignments(items, path, titles=titles, cols_per_row=_config_value(model, "num_heads")))
