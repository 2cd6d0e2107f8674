"""Global attention of Luong, Pham & Manning 2015, "Effective Approaches to
Attention-based Neural Machine Translation" (arXiv:1508.04025).

``α_t = softmax(score(h_t, h̄_s));  c_t = Σ_s α_ts h̄_s;  h̃_t = tanh(W_c [c_t; h_t])`` with
``score = h_tᵀ h̄_s`` (dot) | ``h_tᵀ W_a h̄_s`` (general) |
``v_aᵀ tanh(W_a [h_t; h̄_s])`` (concat) | ``(W_a h_t)_s`` (location).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..core.scores import Additive, General, Location, Score
from ._common import check_dim, check_dropout, check_normalizer, decoder_attend, decoder_inputs
from .base import AttentionOutput
from .projections import ProjectedAdditive, projected_keys
from .registry import register_mechanism

__all__ = ["LuongAttention", "LUONG_MODES"]

LUONG_MODES = ("dot", "general", "concat", "location")
_PAPER = "Luong, Pham & Manning 2015 (arXiv:1508.04025)"


@register_mechanism("luong-dot", "luong", paper=_PAPER, formula="score(h_t, h̄_s) = h_tᵀ h̄_s",
                    defaults={"mode": "dot"})
@register_mechanism("luong-general", "multiplicative", paper=_PAPER,
                    formula="score(h_t, h̄_s) = h_tᵀ W_a h̄_s", defaults={"mode": "general"})
@register_mechanism("luong-concat", paper=_PAPER, formula="score(h_t, h̄_s) = v_aᵀ tanh(W_a [h_t; h̄_s])",
                    defaults={"mode": "concat"})
@register_mechanism("luong-location", paper=_PAPER, formula="a_t = softmax(W_a h_t) (keys unused)",
                    defaults={"mode": "location"})
class LuongAttention(nn.Module):
    """Luong global attention with ``mode="dot" | "general" | "concat" | "location"``.

    Args:
        query_dim: features of h_t (the decoder state).
        key_dim: features of h̄_s (encoder outputs); default ``query_dim``.
            ``mode="dot"`` needs ``key_dim == query_dim``.
        value_dim: features of the values; default ``key_dim``.
        mode: the score (see the module docstring).
        hidden_dim: ``concat``: rows of W_a (default ``query_dim``).
        max_source_len: ``location``: rows of W_a, the longest source it serves.
        combine: return Luong's attentional state ``h̃_t = tanh(W_c [c_t; h_t])``
            (``output_dim = query_dim``) instead of the context ``c_t``
            (``output_dim = value_dim``).
        dropout: dropout on the attention weights (training only).
        normalizer: "softmax" (default) or another normalizer name.

    Shapes: query (B, L, query_dim) or (B, query_dim); keys (B, S, key_dim);
    key_allowed (B, S) bool (True = the key may be attended, a real token; False =
    padding; torch's ``key_padding_mask`` is its negation) -> context
    (B, [L,] output_dim), weights (B, [L,] S) when ``need_weights``. A query
    with no allowed key gets the context 0 (with ``combine``: ``tanh(W_c [0; h_t])``).
    """

    def __init__(
        self,
        query_dim: int,
        *,
        key_dim: Optional[int] = None,
        value_dim: Optional[int] = None,
        mode: str = "general",
        hidden_dim: Optional[int] = None,
        max_source_len: Optional[int] = None,
        combine: bool = False,
        dropout: float = 0.0,
        normalizer: str = "softmax",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_dim(query_dim, "query_dim")
        for n, d in (("key_dim", key_dim), ("value_dim", value_dim), ("hidden_dim", hidden_dim)):
            check_dim(d, n, allow_none=True)
        if mode not in LUONG_MODES:
            raise ValueError(f"mode must be one of {LUONG_MODES}, got {mode!r}")
        fk = {"device": device, "dtype": dtype}
        self.query_dim = query_dim
        self.key_dim = key_dim or query_dim
        self.value_dim = value_dim or self.key_dim
        self.mode = mode
        self.combine = bool(combine)
        self.output_dim = query_dim if combine else self.value_dim
        self.dropout = check_dropout(dropout)
        self.normalizer = check_normalizer(normalizer)
        self.max_source_len = max_source_len
        if mode == "dot" and self.key_dim != query_dim:
            raise ValueError(
                f"mode='dot' needs key_dim == query_dim, got key_dim={self.key_dim} and query_dim={query_dim}; "
                "use mode='general' (h W kᵀ) or 'concat' for different sizes"
            )
        if mode == "location":
            check_dim(max_source_len, "max_source_len (the longest source mode='location' serves)")
        elif max_source_len is not None:
            raise ValueError(f"max_source_len is only used by mode='location', got mode={mode!r}")
        if hidden_dim is not None and mode != "concat":
            raise ValueError(f"hidden_dim is only used by mode='concat', got mode={mode!r}")
        self.hidden_dim = (hidden_dim or query_dim) if mode == "concat" else None
        if mode == "general":
            self.weight = nn.Parameter(torch.empty(query_dim, self.key_dim, **fk))  # (Dq, Dk)
        elif mode == "concat":
            self.w_q = nn.Parameter(torch.empty(self.hidden_dim, query_dim, **fk))  # (D, Dq)
            self.w_k = nn.Parameter(torch.empty(self.hidden_dim, self.key_dim, **fk))  # (D, Dk)
            self.v = nn.Parameter(torch.empty(self.hidden_dim, **fk))
        elif mode == "location":
            self.weight = nn.Parameter(torch.empty(max_source_len, query_dim, **fk))  # (S_max, Dq)
        self.w_c = nn.Linear(self.value_dim + query_dim, query_dim, bias=False, **fk) if combine else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.parameters(recurse=False):
            fan = p.shape[-1]
            nn.init.uniform_(p, -1 / math.sqrt(fan), 1 / math.sqrt(fan))
        if self.w_c is not None:
            self.w_c.reset_parameters()

    def score(self) -> Score | str:
        """The functional score of this mode with this layer's parameters."""
        if self.mode == "dot":
            return "dot"
        if self.mode == "general":
            return General(self.weight)
        if self.mode == "concat":
            return Additive(self.w_q, self.w_k, self.v)
        return Location(self.weight)

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
        """Context (or h̃_t with ``combine``) of ``query`` over ``keys``. Only
        ``mode="concat"`` returns a state: its projected keys, reused when passed
        back with the same ``keys`` (see :class:`AdditiveAttention`)."""
        di = decoder_inputs(
            "LuongAttention", query, keys, values, key_allowed,
            query_dim=self.query_dim, key_dim=self.key_dim, value_dim=self.value_dim,
        )
        if self.mode == "location" and di.keys.shape[1] > self.max_source_len:
            raise ValueError(
                f"LuongAttention(mode='location') was built with max_source_len={self.max_source_len} "
                f"but got a source of length {di.keys.shape[1]}; build it with a larger max_source_len"
            )
        new_state = None
        if self.mode == "concat":  # W_k h̄_s is the same at every step: project the keys once per source
            kp, new_state = projected_keys(di.keys, self.w_k, state)  # (B, S, D)
            di, score = di._replace(keys=kp), ProjectedAdditive(self.w_q, self.v)
        else:
            score = self.score()
        ctx, w, lp = decoder_attend(
            di, score=score, normalizer=self.normalizer, need_weights=need_weights,
            dropout_p=self.dropout if self.training else 0.0,
        )
        if self.w_c is not None:
            q = di.query.squeeze(1) if di.squeeze else di.query
            ctx = torch.tanh(self.w_c(torch.cat([ctx, q], dim=-1)))  # (B, [L,] Dv + Dq) -> (B, [L,] Dq)
        return AttentionOutput(ctx, w, lp, new_state)

    def extra_repr(self) -> str:
        return (
            f"{self.query_dim}, key_dim={self.key_dim}, value_dim={self.value_dim}, mode={self.mode!r}, "
            f"combine={self.combine}, normalizer={self.normalizer.name!r}"
        )
