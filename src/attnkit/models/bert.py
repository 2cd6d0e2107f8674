"""BERT: the bidirectional Transformer encoder (Devlin et al. 2018, arXiv:1810.04805).

``h^L = Encoder(E[x] + P)``; masked-LM head ``p(x_i | x_masked) = softmax(W_e LN(act(W h_i)))``
(output tied to the embedding); classification head ``softmax(W_c pool(h^L))`` with mean pooling
over real tokens (there is no [CLS] token in character windows).

Shape legend: B batch, L positions, D width, H heads, V vocabulary, C classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..data.vocab import PAD
from .layers import (
    ACTIVATIONS,
    POSITIONAL,
    StackConfig,
    TransformerLayer,
    attention_options,
    check_int,
    init_gpt_style,
)
from .losses import cross_entropy_metrics
from .registry import make_config, register_model

__all__ = ["BERT", "BERTConfig", "EncoderOutput"]


@dataclass(eq=False)
class BERTConfig(StackConfig):
    """The fields of a :class:`BERT`: those of :class:`~attnkit.models.layers.StackConfig` (a shorter
    block and dropout 0.1 by default), and ``num_classes``: build the classification head (None: the
    masked-LM head)."""

    model = "bert"

    block_size: int = 128
    dropout: float = 0.1
    num_classes: Optional[int] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes is not None:
            check_int("num_classes", self.num_classes, minimum=2)


class EncoderOutput(NamedTuple):
    logits: Tensor  # masked-LM logits (B, L, V); or class logits (B, C) when the model classifies
    hidden: Tensor  # (B, L, D)
    weights: Optional[list[Tensor]] = None  # per layer (B, H, L, L)


@register_model("bert", "encoder-only")
class BERT(nn.Module):
    """Bidirectional Transformer encoder (see the module docstring).

    ``BERT(BERTConfig(...))``, or ``BERT(vocab_size, **fields)`` for short.
    """

    config_class = BERTConfig

    def __init__(self, config: BERTConfig | int, /, **fields: Any) -> None:
        super().__init__()
        cfg = make_config(BERTConfig, config, "vocab_size", fields)
        self.config = cfg
        dim = cfg.dim
        self.vocab_size, self.block_size, self.num_classes = cfg.vocab_size, cfg.block_size, cfg.num_classes
        self.tok_emb = nn.Embedding(cfg.vocab_size, dim)
        self.pos_emb, pos_opts = POSITIONAL[cfg.positional](dim, cfg.num_heads, cfg.block_size)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.layers = nn.ModuleList(
            TransformerLayer(dim, num_heads=cfg.num_heads, ffn_dim=cfg.ffn_mult * dim, dropout=cfg.dropout,
                             attn_dropout=cfg.dropout, norm_first=cfg.norm_first, window=cfg.window,
                             activation=cfg.activation, bias=cfg.bias,
                             attention=attention_options(cfg.score, pos_opts, None))
            for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(dim, bias=cfg.bias) if cfg.norm_first else nn.Identity()
        if cfg.num_classes is None:
            self.mlm_transform = nn.Sequential(nn.Linear(dim, dim), ACTIVATIONS[cfg.activation](), nn.LayerNorm(dim))
            self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        else:
            self.classifier = nn.Linear(dim, cfg.num_classes)
        init_gpt_style(self, cfg.num_layers)

    @classmethod
    def config_for_task(cls, task: Any, **fields: Any) -> dict[str, Any]:
        """Sized for a masked-LM or classification task: vocabulary, block size, number of classes."""
        kind = getattr(task, "kind", None)
        if kind not in ("mlm", "classify"):
            raise ValueError(f"bert needs a masked-LM or classification task; task {task.name!r} is neither "
                             "(use shakespeare-mlm or shakespeare-genre)")
        cfg = {"model": "bert", "vocab_size": len(task.vocab), "block_size": getattr(task, "block_size", 128)}
        if kind == "classify":
            cfg["num_classes"] = task.num_classes
        cfg.update({k: v for k, v in fields.items() if v is not None})
        BERTConfig.from_dict(cfg)  # unknown or invalid fields raise here
        return cfg

    def forward(self, x: Tensor, *, key_allowed: Optional[Tensor] = None, need_weights: bool = False) -> EncoderOutput:
        """``x`` (B, L) ids; ``key_allowed`` (B, L) bool, True = the token may be attended,
        False = padding (default: ids != PAD)."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.dtype != torch.long:
            got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"x must be a (B, L) long tensor of token ids, got {got}")
        if x.shape[1] > self.block_size:
            raise ValueError(f"input of {x.shape[1]} tokens exceeds block_size={self.block_size}; cut it into windows")
        if key_allowed is None and bool((x == PAD).any()):
            key_allowed = x != PAD  # (B, L)
        h = self.tok_emb(x)  # (B, L, D)
        if self.pos_emb is not None:
            h = self.pos_emb(h)
        h = self.drop(h)
        weights: list[Tensor] = []
        for layer in self.layers:
            h, w, _ = layer(h, key_allowed=key_allowed, need_weights=need_weights)
            if need_weights:
                weights.append(w)
        h = self.norm(h)  # (B, L, D)
        if self.num_classes is None:
            logits = F.linear(self.mlm_transform(h), self.tok_emb.weight, self.mlm_bias)  # (B, L, V)
        else:
            if key_allowed is None:
                pooled = h.mean(1)  # (B, D)
            else:
                m = key_allowed.unsqueeze(-1).to(h.dtype)  # (B, L, 1)
                pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, D)
            logits = self.classifier(pooled)  # (B, C)
        return EncoderOutput(logits, h, weights if need_weights else None)

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Classification cross-entropy on ``batch.label``, else masked-LM cross-entropy on ``batch.target_mask``."""
        logits = self(batch.x).logits
        if self.num_classes is not None:
            if getattr(batch, "label", None) is None:
                raise ValueError("this BERT has a classification head; train it on a task with labels "
                                 "(e.g. shakespeare-genre) or build it without num_classes")
            return cross_entropy_metrics(logits, batch.label, accuracy=not self.training)
        if getattr(batch, "target_mask", None) is None:
            raise ValueError("this BERT has a masked-LM head; train it on a masked task (shakespeare-mlm) or "
                             "build it with num_classes for a classification task")
        targets = batch.y.masked_fill(~batch.target_mask, -100)  # (B, L): loss on masked positions only
        return cross_entropy_metrics(logits, targets, accuracy=not self.training)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """Encoder-only models do not generate: they see the whole input at once."""
        raise ValueError(
            "bert is an encoder-only model (bidirectional, no causal decoder), so it cannot generate text; "
            "use `attnkit predict RUN_DIR` to fill in masked characters or classify, or train a decoder "
            "with `attnkit train shakespeare --model gpt` and generate from that"
        )

    @torch.no_grad()
    def attention_maps(self, x: Tensor) -> list[Tensor]:
        was = self.training
        self.eval()
        try:
            return self(x, need_weights=True).weights or []
        finally:
            self.train(was)
