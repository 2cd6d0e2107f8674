"""Local attention of Luong, Pham & Manning 2015, "Effective Approaches to
Attention-based Neural Machine Translation" (arXiv:1508.04025), section 3.2.

``a_t(s) = align(h_t, h̄_s) · exp(-(s - p_t)² / (2σ²))`` over the window ``|s - p_t| <= D``,
with ``p_t = t`` (local-m) or ``p_t = S · sigmoid(v_pᵀ tanh(W_p h_t))`` (local-p), σ = D/2.

Two ways to apply local-p's Gaussian (``gaussian=``):

* ``"multiply"`` (default, the paper's formula): softmax over the window,
  then multiply by the Gaussian; the weights are *not* renormalised and sum
  to less than 1. This needs the weights, so the attention call materialises them.
* ``"bias"``: add the log-Gaussian ``-(s - p_t)²/(2σ²)`` to the scores before
  the softmax (:func:`attnkit.core.masks.gaussian_bias`): the same
  Gaussian factor, renormalised over the window, and fused backends can run it.

Global attention is the same layer with ``half_width=None`` (no window).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..core import masks as fmasks
from ._common import check_dim, decoder_attend, decoder_inputs
from .base import AttentionOutput
from .luong import LuongAttention
from .registry import register_mechanism

__all__ = ["LocalAttention", "predictive_position", "LOCAL_MODES", "GAUSSIAN_MODES"]

LOCAL_MODES = ("monotonic", "predictive")
GAUSSIAN_MODES = ("multiply", "bias")
_PAPER = "Luong, Pham & Manning 2015 (arXiv:1508.04025)"


def predictive_position(h: Tensor, w_p: Tensor, v_p: Tensor, lengths: Tensor | float) -> Tensor:
    """Luong local-p's aligned position ``p_t = S · sigmoid(v_pᵀ tanh(W_p h_t))``.

    h (B, L, Dq), w_p (Dp, Dq), v_p (Dp,), lengths (B,) or a number -> (B, L) in [0, S].
    """
    a = torch.tanh(h @ w_p.transpose(0, 1)) @ v_p  # (B, L)
    if isinstance(lengths, Tensor):
        lengths = lengths.to(a.dtype).unsqueeze(-1)  # (B, 1)
    return lengths * torch.sigmoid(a)


@register_mechanism("local-p", "local-predictive", "luong-local-p", paper=_PAPER,
                    formula="p_t = S·sigmoid(v_pᵀ tanh(W_p h_t)); "
                    "a_t(s) = align(h_t, h̄_s)·exp(-(s-p_t)²/(2σ²)), |s-p_t| <= D",
                    defaults={"mode": "predictive"})
@register_mechanism("local-m", "local-monotonic", "luong-local-m", "local", paper=_PAPER,
                    formula="p_t = t; a_t = softmax(align(h_t, h̄_s)) over |s - p_t| <= D",
                    defaults={"mode": "monotonic"})
class LocalAttention(nn.Module):
    """Luong local attention: a window of half-width D around an aligned position p_t.

    Args:
        query_dim: features of h_t; ``key_dim`` / ``value_dim`` as in
            :class:`LuongAttention` (defaults ``query_dim`` / ``key_dim``).
        mode: "monotonic" (local-m, p_t = t: the ``step`` argument plus the
            query's index) or "predictive" (local-p, learned p_t).
        half_width: D (10 in the paper); None gives global attention.
        score: the align score inside the window, "general" (the paper's
            choice for local), "dot" or "concat".
        gaussian: local-p only, "multiply" (paper, default) or "bias"; see
            the module docstring.
        hidden_dim: rows of W_p (local-p); default ``query_dim``.
        dropout: as in :class:`LuongAttention`.
        normalizer: as in :class:`LuongAttention`.

    local-p takes S as each sequence's real length (the number of True in
    ``key_allowed``, or the key length). ``key_allowed`` (B, S) bool: True = the
    key may be attended (a real token), False = padding (torch's
    ``key_padding_mask`` is its negation).
    """

    def __init__(
        self,
        query_dim: int,
        *,
        key_dim: Optional[int] = None,
        value_dim: Optional[int] = None,
        mode: str = "predictive",
        half_width: Optional[int] = 10,
        score: str = "general",
        gaussian: str = "multiply",
        hidden_dim: Optional[int] = None,
        dropout: float = 0.0,
        normalizer: str = "softmax",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if mode not in LOCAL_MODES:
            raise ValueError(f"mode must be one of {LOCAL_MODES}, got {mode!r}")
        if gaussian not in GAUSSIAN_MODES:
            raise ValueError(f"gaussian must be one of {GAUSSIAN_MODES}, got {gaussian!r}")
        if score not in ("dot", "general", "concat"):
            raise ValueError(f"score must be 'dot', 'general' or 'concat', got {score!r}")
        bad_width = isinstance(half_width, bool) or not isinstance(half_width, int) or half_width < 0
        if half_width is not None and bad_width:
            raise ValueError(f"half_width (D) must be an int >= 0 or None (global attention), got {half_width!r}")
        check_dim(hidden_dim, "hidden_dim", allow_none=True)
        fk = {"device": device, "dtype": dtype}
        self.align = LuongAttention(query_dim, key_dim=key_dim, value_dim=value_dim, mode=score,
                                    dropout=dropout, normalizer=normalizer, **fk)
        self.query_dim, self.key_dim, self.value_dim = query_dim, self.align.key_dim, self.align.value_dim
        self.output_dim = self.value_dim
        self.mode, self.half_width, self.gaussian = mode, half_width, gaussian
        if mode == "predictive" and half_width is not None:
            Dp = hidden_dim or query_dim
            self.w_p = nn.Parameter(torch.empty(Dp, query_dim, **fk))  # (Dp, Dq)
            self.v_p = nn.Parameter(torch.empty(Dp, **fk))
            nn.init.uniform_(self.w_p, -1 / math.sqrt(query_dim), 1 / math.sqrt(query_dim))
            nn.init.uniform_(self.v_p, -1 / math.sqrt(Dp), 1 / math.sqrt(Dp))
        elif hidden_dim is not None:
            raise ValueError("hidden_dim sizes W_p of mode='predictive' with a window; drop it here")

    @property
    def sigma(self) -> float:
        """σ = D / 2 of the Gaussian (local-p)."""
        return (self.half_width or 0) / 2.0

    def centers(self, query: Tensor, key_allowed: Optional[Tensor], S: int, step: Optional[int] = None) -> Tensor:
        """Aligned positions p_t (B, L) for a query (B, L, Dq)."""
        B, L, _ = query.shape
        if self.mode == "monotonic":
            t0 = 0 if step is None else int(step)
            p = torch.arange(t0, t0 + L, device=query.device, dtype=query.dtype)  # (L,)
            return p.expand(B, L)
        lengths = key_allowed.sum(-1) if key_allowed is not None else float(S)
        return predictive_position(query, self.w_p, self.v_p, lengths)  # (B, L)

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
        """Context over the window; ``step`` is t of the first query (local-m).
        ``state`` is unused; the returned state holds ``{"centers": p_t}`` (B, [L])."""
        if self.half_width is None:
            out = self.align(query, keys, values, key_allowed=key_allowed, need_weights=need_weights)
            return out
        di = decoder_inputs(
            "LocalAttention", query, keys, values, key_allowed,
            query_dim=self.query_dim, key_dim=self.key_dim, value_dim=self.value_dim,
        )
        B, L, _ = di.query.shape
        S = di.keys.shape[1]
        p = self.centers(di.query, key_allowed, S, step)  # (B, L)
        window = fmasks.window_mask(L, S, self.half_width, centers=p)[:, None]  # (B, 1, L, S)
        mask = fmasks.combine(di.mask, window)
        dropout_p = self.align.dropout if self.training else 0.0
        predictive = self.mode == "predictive"
        if predictive and self.gaussian == "bias":
            sigma = max(self.sigma, 1e-3)
            bias = fmasks.gaussian_bias(S, p, sigma).to(di.query.dtype)[:, None]  # (B, 1, L, S)
            mask = fmasks.combine(mask, bias)
        multiply = predictive and self.gaussian == "multiply"
        ctx, w, lp = decoder_attend(
            di._replace(squeeze=False), score=self.align.score(), normalizer=self.align.normalizer,
            need_weights=need_weights or multiply, dropout_p=0.0 if multiply else dropout_p, mask=mask,
        )
        if multiply:
            sigma = max(self.sigma, 1e-3)
            w = w * torch.exp(fmasks.gaussian_bias(S, p, sigma)).to(w.dtype)  # (B, L, S), not renormalised
            w_used = nn.functional.dropout(w, dropout_p, self.training) if dropout_p else w
            ctx = w_used @ di.values  # (B, L, Dv)
        if di.squeeze:
            ctx, p = ctx.squeeze(1), p.squeeze(1)  # (B, Dv), (B,)
            w = w.squeeze(1) if w is not None else None
            lp = lp.squeeze(1) if lp is not None else None
        return AttentionOutput(ctx, w if need_weights else None, lp, {"centers": p})

    def extra_repr(self) -> str:
        return f"{self.query_dim}, mode={self.mode!r}, half_width={self.half_width}, gaussian={self.gaussian!r}"
