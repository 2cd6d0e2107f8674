"""viz.heads: one heatmap per head, and a clear error (naming ``layer``) for a layer the model lacks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from attnkit.viz import plot_heads, plot_heads_grid

pytest.importorskip("matplotlib")


def test_plot_heads_writes_one_panel_per_head(tmp_path):
    w = torch.softmax(torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(0)), dim=-1)  # (H, L, L)
    path = plot_heads(w, list("hello"), tmp_path / "heads.png", layers=1, title="gpt")
    assert path == str(tmp_path / "heads.png")
    assert (tmp_path / "heads.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _Dec(torch.nn.Module):
    """A stand-in encoder-decoder: 2 decoder layers of 2 heads, uniform cross-attention."""

    config = {"model": "transformer", "decoder_layers": 2, "num_heads": 2}

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def cross_attention_maps(self, src, src_lengths, out_ids):
        S, T = src.shape[1], len(out_ids) + 1
        return [torch.full((2, T, S), 1.0 / S) for _ in range(2)]  # per layer (H, T+1, S)


def _task():
    vocab = SimpleNamespace(stoi={c: i for i, c in enumerate("xyz")}, tokens=lambda s: list(s))
    return SimpleNamespace(encode_source=lambda t: [0] * len(t), normalize=lambda t: t, tgt_vocab=vocab,
                           src_vocab=vocab)


def test_plot_heads_grid_and_a_missing_layer(tmp_path):
    model, task = _Dec(), _task()
    path = plot_heads_grid(model, task, ["xyz"], [["y", "x"]], -1, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 1000 and path.endswith("grid.png")
    with pytest.raises(ValueError, match=r"layer=2: the decoder has 2 layers \(0..1"):
        plot_heads_grid(model, task, ["xyz"], [["y"]], 2, tmp_path / "no.png")
