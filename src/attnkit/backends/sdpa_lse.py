"""torch SDPA's fused CPU kernel with its log-sum-exp: blocks of a merge by log-sum-exp (ring attention).

``scaled_dot_product_attention`` returns the output only; its CPU flash kernel
(``aten::_scaled_dot_product_flash_attention_for_cpu``, after Dao et al. 2022, arXiv:2205.14135)
also returns ``lse_i = log Σ_j exp(s_ij)``, and its backward takes ``(out, lse)``, which may be the
*merged* output and log-sum-exp of many key blocks: the FlashAttention-2 backward (Dao 2023,
arXiv:2307.08691) ``dS_ij = P_ij (dP_ij - D_i)``, ``P_ij = exp(s_ij - lse_i)``, ``D_i = dO_i · O_i``
is exact per block with the global (O, lse), so a ring backward needs no recomputed forward.
This is how ring-flash-attention and torch's ``context_parallel`` run the dot family.

Taken for the plain dot scores (``dot``, ``scaled_dot``: no projection, so the kernel's gradients
are the inputs'), no dropout, one key head per query head, on CPU (:func:`takes`). A key mask
(bool, True = may be attended, or a float bias, (B|1, H|1, 1, S)) goes in as a float bias. The
kernel gives lse = 0 and output 0 for a row with no allowed key; :func:`forward` turns such rows
into (0, -inf), the merge's neutral element, and :func:`backward` reads a -inf lse as +inf so their
weights and gradients are 0.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..core.scores import Dot, ScaledDot, Score

__all__ = ["takes", "forward", "backward", "DTYPES"]

DTYPES = (torch.float32, torch.float64, torch.bfloat16)
_OP = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def takes(q: Tensor, k: Tensor, score: Score, dropout_p: float) -> bool:
    """Whether the fused kernel runs blocks of q (B, H, L, E) against k (B, Hk, S, E) for ``score``."""
    return (type(score) in (Dot, ScaledDot) and dropout_p == 0 and q.is_cpu and q.dtype in DTYPES
            and q.shape[1] == k.shape[1] and q.shape[-1] == k.shape[-1])


def _bias(mask: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    """A key mask as the float bias the kernel takes (same dtype as the query)."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
    return mask.to(dtype)


def _rows_ok(mask: Optional[Tensor], causal: bool) -> Optional[Tensor]:
    """(B|1, H|1, L|1, 1): rows with at least one allowed key (None: every row has one). Causal rows
    are top-left with L == S: row i sees keys 0..i."""
    if mask is None:
        return None
    allowed = mask if mask.dtype == torch.bool else mask > float("-inf")  # (B|1, H|1, 1, S)
    if causal:
        return (allowed.cumsum(-1) > 0).transpose(-1, -2)  # (B|1, H|1, S = L, 1)
    return allowed.any(-1, keepdim=True)  # (B|1, H|1, 1, 1)


def forward(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], causal: bool,
            scale: float) -> tuple[Tensor, Tensor]:
    """(output (B, H, L, Ev), lse (B, H, L) float32 / float64), no autograd."""
    out, lse = _OP(q, k, v, 0.0, causal, attn_mask=_bias(mask, q.dtype), scale=scale)
    ok = _rows_ok(mask, causal)
    if ok is not None:
        out = out.masked_fill(~ok, 0.0)
        lse = lse.masked_fill(~ok.squeeze(-1), float("-inf"))
    return out, lse


def backward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, mask: Optional[Tensor],
             causal: bool, scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """(dq, dk, dv) of one block given the merged ``out`` (B, H, L, Ev) and ``lse`` (B, H, L) of every block."""
    lse = torch.where(lse == float("-inf"), torch.full_like(lse, float("inf")), lse)  # weights 0, never NaN
    return _BACKWARD(dout.contiguous(), q, k, v, out.contiguous(), lse.contiguous(), 0.0, causal,
                     attn_mask=_bias(mask, q.dtype), scale=scale)
