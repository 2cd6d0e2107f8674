"""Additive attention: Bahdanau, Cho & Bengio 2014, "Neural Machine Translation by
Jointly Learning to Align and Translate" (arXiv:1409.0473).

``e_ts = vᵀ tanh(W_q q_t + W_k k_s [+ b]);  α_t = softmax(e_t);  c_t = Σ_s α_ts v_s``

``W_k k_s`` does not depend on the decoder step t, so, as the paper's
footnote suggests, it is computed once per source: the returned ``state``
holds the projected keys, and passing it back with the same ``keys`` tensor
(``state=out.state``) skips the projection at every later step.

With ``normalize=True`` the score uses the weight-normalised
``v = g · v / |v|`` and a bias ``b`` (Salimans & Kingma 2016, arXiv:1602.07868),
as TensorFlow Addons' ``BahdanauAttention(normalize=True)`` does.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..core.scores import Additive
from ._common import check_dim, check_dropout, check_normalizer, decoder_attend, decoder_inputs
from .base import AttentionOutput
from .projections import ProjectedAdditive, projected_keys
from .registry import register_mechanism

__all__ = ["AdditiveAttention", "additive_score"]


def additive_score(
    w_q: Tensor, w_k: Tensor, v: Tensor, bias: Optional[Tensor] = None, *, g: Optional[Tensor] = None
) -> Additive:
    """The functional :class:`~attnkit.core.scores.Additive` score, with
    ``v`` weight-normalised to ``g · v / |v|`` when ``g`` is given."""
    if g is not None:
        v = g * v / v.norm(dim=-1, keepdim=True)
    return Additive(w_q, w_k, v, bias)


@register_mechanism(
    "bahdanau",
    "bahdanau-attention",
    paper="Bahdanau, Cho & Bengio 2014 (arXiv:1409.0473)",
    formula="e_ts = vᵀ tanh(W_q q_t + W_k k_s); c_t = Σ_s softmax(e_t)_s v_s",
)
class AdditiveAttention(nn.Module):
    """Bahdanau (additive, "concat") attention: ``e_ts = vᵀ tanh(W_q q_t + W_k k_s)``.

    Args:
        query_dim: features of the query (the decoder state).
        key_dim: features of the keys (encoder outputs); default ``query_dim``.
        value_dim: features of the values; default ``key_dim``. The context has
            ``value_dim`` features (``output_dim``).
        hidden_dim: D, the size of the tanh layer; default ``key_dim``.
        normalize: weight-normalise v to ``g · v/|v|`` and add a bias b
            (TensorFlow Addons' ``normalize=True``); g starts at sqrt(1/D).
        bias: add a learned bias b inside the tanh (always on with normalize).
        dropout: dropout on the attention weights (training only).
        normalizer: "softmax" (default) or any other normalizer name
            ("sparsemax", "entmax15", ...).

    Shapes: query (B, L, query_dim) or one step (B, query_dim); keys
    (B, S, key_dim); values (B, S, value_dim) default to keys; key_allowed (B, S)
    bool (True = the key may be attended, a real token; False = padding;
    torch's ``key_padding_mask`` is its negation) -> context (B, [L,] value_dim), weights
    (B, [L,] S) when ``need_weights``.

    Example::

        >>> att = AdditiveAttention(4, key_dim=6)
        >>> out = att(torch.randn(2, 4), torch.randn(2, 7, 6), need_weights=True)
        >>> out.context.shape, out.weights.shape
        (torch.Size([2, 6]), torch.Size([2, 7]))
    """

    def __init__(
        self,
        query_dim: int,
        *,
        key_dim: Optional[int] = None,
        value_dim: Optional[int] = None,
        hidden_dim: Optional[int] = None,
        normalize: bool = False,
        bias: bool = False,
        dropout: float = 0.0,
        normalizer: str = "softmax",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_dim(query_dim, "query_dim")
        for n, d in (("key_dim", key_dim), ("value_dim", value_dim), ("hidden_dim", hidden_dim)):
            check_dim(d, n, allow_none=True)
        fk = {"device": device, "dtype": dtype}
        self.query_dim = query_dim
        self.key_dim = key_dim or query_dim
        self.value_dim = value_dim or self.key_dim
        self.hidden_dim = hidden_dim or self.key_dim
        self.output_dim = self.value_dim
        self.normalize = bool(normalize)
        self.dropout = check_dropout(dropout)
        self.normalizer = check_normalizer(normalizer)
        D = self.hidden_dim
        self.w_q = nn.Parameter(torch.empty(D, query_dim, **fk))  # (D, Dq)
        self.w_k = nn.Parameter(torch.empty(D, self.key_dim, **fk))  # (D, Dk)
        self.v = nn.Parameter(torch.empty(D, **fk))
        self.bias = nn.Parameter(torch.empty(D, **fk)) if (bias or normalize) else None
        self.g = nn.Parameter(torch.empty((), **fk)) if normalize else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in (self.w_q, self.w_k):
            nn.init.uniform_(w, -1 / math.sqrt(w.shape[1]), 1 / math.sqrt(w.shape[1]))
        nn.init.uniform_(self.v, -1 / math.sqrt(self.hidden_dim), 1 / math.sqrt(self.hidden_dim))
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        if self.g is not None:
            nn.init.constant_(self.g, math.sqrt(1.0 / self.hidden_dim))

    def score(self) -> Additive:
        """The functional score with this layer's parameters."""
        return additive_score(self.w_q, self.w_k, self.v, self.bias, g=self.g)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Optional[Tensor] = None,
        *,
        key_allowed: Optional[Tensor] = None,
        step: Optional[int] = None,
        state: Any = None,
        need_weights: bool = False,
    ) -> AttentionOutput:
        """Context of ``query`` over ``keys``. ``step`` is unused. The returned
        ``state`` {"keys", "w_k_version", "projected_keys"} lets the next call with the
        same ``keys`` skip ``W_k k`` (pass it back as ``state=``); any other
        state is ignored."""
        di = decoder_inputs(
            "AdditiveAttention", query, keys, values, key_allowed,
            query_dim=self.query_dim, key_dim=self.key_dim, value_dim=self.value_dim,
        )
        kp, new_state = projected_keys(di.keys, self.w_k, state)  # (B, S, D)
        v = self.v if self.g is None else self.g * self.v / self.v.norm()
        ctx, w, lp = decoder_attend(
            di._replace(keys=kp), score=ProjectedAdditive(self.w_q, v, self.bias), normalizer=self.normalizer,
            need_weights=need_weights, dropout_p=self.dropout if self.training else 0.0,
        )
        return AttentionOutput(ctx, w, lp, new_state)

    def extra_repr(self) -> str:
        return (
            f"{self.query_dim}, key_dim={self.key_dim}, value_dim={self.value_dim}, "
            f"hidden_dim={self.hidden_dim}, normalize={self.normalize}, normalizer={self.normalizer.name!r}"
        )
