"""Self-attention as the textbooks draw it: Vaswani et al. 2017 (arXiv:1706.03762).

``Q = X W^Q,  K = X W^K,  V = X W^V,  Y = softmax(Q Kᵀ / sqrt(d)) V``

A thin :class:`MultiHeadAttention` with one input (one head and no biases by
default, as drawn; more heads add ``W^O``).
"""

from __future__ import annotations

from typing import Any, Optional

from torch import Tensor

from ..core.scores import Score
from .base import AttentionOutput
from .multihead import KVCache, MultiHeadAttention
from .registry import register_mechanism

__all__ = ["SelfAttention"]


@register_mechanism(
    "self-attention",
    "self",
    "self-attn",
    paper="Vaswani et al. 2017 (arXiv:1706.03762)",
    formula="Q, K, V = X W^Q, X W^K, X W^V; Y = softmax(Q Kᵀ / sqrt(d)) V",
)
class SelfAttention(MultiHeadAttention):
    """``Y = softmax(X W^Q (X W^K)ᵀ / sqrt(d)) X W^V`` (Vaswani et al. 2017).

    Args:
        dim: features of X (and Y).
        num_heads: 1 by default (the textbook picture).
        causal: each position sees itself and the past only (a decoder).
        bias: biases on the projections (off by default, as drawn).
        key_dim, value_dim, num_kv_heads, head_dim, out_dim, dropout, score,
        normalizer, rope, alibi: as :class:`MultiHeadAttention`.

    ``forward(x (B, N, dim), *, key_mask=None, need_weights=False, cache=None)``.
    Given ``keys`` (the decoder-style call of the registry) it attends over
    them instead (cross-attention), with the same projections.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 1,
        causal: bool = False,
        bias: bool = False,
        key_dim: Optional[int] = None,
        value_dim: Optional[int] = None,
        num_kv_heads: Optional[int] = None,
        head_dim: Optional[int] = None,
        out_dim: Optional[int] = None,
        dropout: float = 0.0,
        score: str | Score = "scaled_dot",
        normalizer: str = "softmax",
        rope: bool = False,
        alibi: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(dim, num_heads=num_heads, bias=bias, key_dim=key_dim, value_dim=value_dim,
                         num_kv_heads=num_kv_heads, head_dim=head_dim, out_dim=out_dim, dropout=dropout,
                         score=score, normalizer=normalizer, rope=rope, alibi=alibi, device=device, dtype=dtype)
        self.causal = bool(causal)

    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        keys: Optional[Tensor] = None,
        values: Optional[Tensor] = None,
        *,
        key_mask: Optional[Tensor] = None,
        attn_mask: Optional[Tensor] = None,
        cache: Optional[KVCache] = None,
        need_weights: bool = False,
        step: Optional[int] = None,
        state: Optional[KVCache] = None,
        **kwargs: Any,
    ) -> AttentionOutput:
        causal = self.causal and keys is None
        return super().forward(x, keys, values, key_mask=key_mask, attn_mask=attn_mask, causal=causal,
                               cache=cache, need_weights=need_weights, step=step, state=state, **kwargs)
