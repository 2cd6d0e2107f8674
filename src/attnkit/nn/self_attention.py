"""Self-attention as the textbooks draw it: Vaswani et al. 2017 (arXiv:1706.03762).

``Q = X W^Q,  K = X W^K,  V = X W^V,  Y = softmax(Q Kᵀ / sqrt(d)) V``

A thin :class:`~attnkit.nn.multihead.MultiHeadMechanism` with one input (one
head and no biases by default, as drawn; more heads add ``W^O``).
"""

from __future__ import annotations

from typing import Any, Optional

from torch import Tensor

from ..core.normalize import Normalizer
from ..core.scores import Score
from .base import AttentionOutput
from .kv_cache import KVCache
from .multihead import MultiHeadMechanism, Positional
from .registry import register_mechanism

__all__ = ["SelfAttention"]


@register_mechanism(
    "self-attention",
    "self",
    "self-attn",
    paper="Vaswani et al. 2017 (arXiv:1706.03762)",
    formula="Q, K, V = X W^Q, X W^K, X W^V; Y = softmax(Q Kᵀ / sqrt(d)) V",
)
class SelfAttention(MultiHeadMechanism):
    """``Y = softmax(X W^Q (X W^K)ᵀ / sqrt(d)) X W^V`` (Vaswani et al. 2017).

    Args:
        dim: features of X (and Y).
        num_heads: 1 by default (the textbook picture).
        causal: each position sees itself and the past only (a decoder).
        bias: biases on the projections (off by default, as drawn).

    ``key_dim``, ``value_dim``, ``num_kv_heads``, ``head_dim``, ``out_dim``, ``dropout``, ``score``,
    ``normalizer`` and ``positional`` are as in :class:`~attnkit.nn.MultiHeadAttention`.

    ``forward(x (B, N, dim), *, key_allowed=None, need_weights=False, state=None)``
    (``key_allowed`` (B, N) bool, True = the key may be attended, False = padding,
    the negation of torch's ``key_padding_mask``; ``state`` a KVCache, also
    accepted as ``cache=``). Given ``keys`` (the
    decoder-style call of the registry) it attends over them instead
    (cross-attention, never causal), with the same projections.
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
        normalizer: str | Normalizer = "softmax",
        positional: Optional[Positional] = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(dim, num_heads=num_heads, bias=bias, key_dim=key_dim, value_dim=value_dim,
                         num_kv_heads=num_kv_heads, head_dim=head_dim, out_dim=out_dim, dropout=dropout,
                         score=score, normalizer=normalizer, positional=positional, device=device, dtype=dtype)
        self.causal = bool(causal)

    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        keys: Optional[Tensor] = None,
        values: Optional[Tensor] = None,
        *,
        key_allowed: Optional[Tensor] = None,
        step: Optional[int] = None,
        state: Optional[KVCache] = None,
        need_weights: bool = False,
        **options: Any,
    ) -> AttentionOutput:
        return super().forward(x, keys, values, key_allowed=key_allowed, step=step, state=state,
                               need_weights=need_weights, causal=self.causal and keys is None, **options)
