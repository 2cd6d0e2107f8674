"""Masks: which keys each query may attend to.

Polarity (DESIGN.md): a boolean mask is True where attention is ALLOWED, as in
torch SDPA and FlexAttention. A float mask is added to the scores (0 allows,
-inf forbids, anything else biases). Every mask broadcasts to (B, H, L, S).

* :func:`padding_mask` / :func:`lengths_mask`: keys past each sequence's length.
* :func:`causal_mask`: query i sees key j <= i (top-left) or, for cached decoding
  where the L queries are the last L of S positions, j <= i + S - L (bottom-right).
* :func:`window_mask`: Luong et al. 2015 (arXiv:1508.04025) local-m, keys within
  half-width D of a centre p_t: ``|s - p_t| <= D``.
* :func:`gaussian_bias`: Luong local-p's factor ``exp(-(s - p_t)² / (2σ²))``,
  σ = D/2, returned as a log-bias to add to the scores.
* :func:`combine`: and / or of any masks, boolean or float.
* :func:`mask_index`: the index of one (rows, columns) tile of a broadcastable mask.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "lengths_mask",
    "padding_mask",
    "causal_mask",
    "window_mask",
    "gaussian_bias",
    "combine",
    "to_bool",
    "to_float",
    "CAUSAL_ALIGNMENTS",
    "mask_index",
]

CAUSAL_ALIGNMENTS = ("top_left", "bottom_right")


def mask_index(mask: Tensor, q0: int, q1: int, k0: int, k1: int) -> tuple[object, ...]:
    """Index of rows q0:q1, columns k0:k1 of a mask broadcastable to (.., L, S), usable to read and to write.

    Dimensions of size 1 (broadcast) stay whole: ``mask[mask_index(mask, 0, 2, 1, 3)]`` of a
    (B, 1, 1, S) key-padding mask is (B, 1, 1, 2).
    """
    rows = slice(q0, q1) if mask.dim() >= 2 and mask.shape[-2] != 1 else slice(None)
    cols = slice(k0, k1) if mask.dim() >= 1 and mask.shape[-1] != 1 else slice(None)
    return (Ellipsis, rows, cols) if mask.dim() >= 2 else (Ellipsis, cols)


def lengths_mask(lengths: Tensor, S: int) -> Tensor:
    """(B,) lengths -> boolean (B, 1, 1, S): True for s < lengths[b]."""
    if not isinstance(lengths, Tensor) or lengths.dim() != 1:
        raise ValueError(f"lengths must be a 1-D tensor (B,), got {getattr(lengths, 'shape', lengths)!r}")
    if lengths.is_floating_point():
        raise TypeError("lengths must be an integer tensor; pass lengths.long()")
    if bool(((lengths < 0) | (lengths > S)).any()):
        raise ValueError(f"lengths must lie in [0, {S}] (the key length), got {lengths.tolist()}")
    s = torch.arange(S, device=lengths.device)
    return (s < lengths[:, None]).view(-1, 1, 1, S)  # (B, 1, 1, S)


def padding_mask(key_padding: Tensor, *, ignore: bool = True) -> Tensor:
    """(B, S) padding flags -> boolean (B, 1, 1, S) allowed mask.

    ``ignore=True`` (the torch.nn.MultiheadAttention convention) reads True as
    "padding, ignore"; ``ignore=False`` reads True as "real token".
    """
    if key_padding.dim() != 2 or key_padding.dtype != torch.bool:
        raise ValueError(
            f"key_padding must be a boolean (B, S) tensor, got {key_padding.dtype} {tuple(key_padding.shape)}"
        )
    allowed = ~key_padding if ignore else key_padding
    return allowed[:, None, None, :]  # (B, 1, 1, S)


def causal_mask(
    L: int, S: int | None = None, *, alignment: Literal["top_left", "bottom_right"] = "top_left", device=None
) -> Tensor:
    """Boolean (L, S) causal mask.

    ``top_left``: query i sees keys j <= i (torch's ``is_causal``).
    ``bottom_right``: the queries are the last L of S positions (cached
    decoding): query i sees keys j <= i + (S - L).
    """
    S = L if S is None else S
    if alignment not in CAUSAL_ALIGNMENTS:
        raise ValueError(f"alignment must be one of {CAUSAL_ALIGNMENTS}, got {alignment!r}")
    i = torch.arange(L, device=device)[:, None]
    j = torch.arange(S, device=device)[None, :]
    offset = 0 if alignment == "top_left" else S - L
    return j <= i + offset  # (L, S)


def window_mask(
    L: int,
    S: int,
    half_width: int,
    *,
    centers: Tensor | None = None,
    device=None,
) -> Tensor:
    """Boolean mask of keys within ``half_width`` D of a centre: |s - p_t| <= D.

    Luong local-m: ``centers=None`` aligns query t with source position t
    (monotonic). Otherwise ``centers`` (..., L) holds p_t (may be fractional);
    the result is (..., L, S), e.g. (B, H, L, S) for centres (B, H, L).
    """
    if not isinstance(half_width, int) or half_width < 0:
        raise ValueError(f"half_width (D) must be an integer >= 0, got {half_width!r}")
    s = torch.arange(S, device=device if centers is None else centers.device)
    if centers is None:
        p = torch.arange(L, device=s.device)[:, None]  # (L, 1)
        return (s[None, :] - p).abs() <= half_width  # (L, S)
    if centers.shape[-1] != L:
        raise ValueError(f"centers has shape {tuple(centers.shape)}; its last size must be L = {L}")
    return (s - centers.unsqueeze(-1)).abs() <= half_width  # (..., L, S)


def gaussian_bias(S: int, centers: Tensor, sigma: float | Tensor) -> Tensor:
    """Luong local-p log-factor: ``-(s - p_t)² / (2σ²)`` as a float bias (..., L, S).

    Added to the scores it multiplies the softmax numerators by the Gaussian
    ``exp(-(s - p_t)² / (2σ²))``; the softmax then renormalises over the
    window (Luong's paper leaves the product unnormalised; the LocalAttention
    module offers both). Use σ = D / 2. Gradients flow into ``centers``.
    """
    if isinstance(sigma, (int, float)) and not sigma > 0:
        raise ValueError(f"sigma must be > 0 (Luong uses D/2), got {sigma!r}")
    s = torch.arange(S, device=centers.device, dtype=centers.dtype if centers.is_floating_point() else torch.float32)
    d = s - centers.unsqueeze(-1)  # (..., L, S)
    if isinstance(sigma, Tensor) and sigma.dim() > 0:
        sigma = sigma.unsqueeze(-1)
    return -(d * d) / (2.0 * sigma * sigma)


def to_float(mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """A boolean allowed-mask as an additive float mask (0 allowed, -inf not)."""
    if mask.dtype == torch.bool:
        out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
        return out.masked_fill(~mask, float("-inf"))
    return mask.to(dtype)


def to_bool(mask: Tensor) -> Tensor:
    """Allowed positions of a mask: bool as is, float where > -inf."""
    if mask.dtype == torch.bool:
        return mask
    return mask > float("-inf")


def combine(*masks: Tensor | None, op: Literal["and", "or"] = "and") -> Tensor | None:
    """Combine masks. ``and``: allowed only where all allow (float biases add).

    ``or``: allowed where any allows (float biases: the larger wins, as
    ``logaddexp`` would be wrong for a mask). Mixed bool and float go to float.
    ``None`` entries are skipped; all-None gives None.
    """
    ms = [m for m in masks if m is not None]
    if op not in ("and", "or"):
        raise ValueError(f"op must be 'and' or 'or', got {op!r}")
    if not ms:
        return None
    if all(m.dtype == torch.bool for m in ms):
        out = ms[0]
        for m in ms[1:]:
            out = (out & m) if op == "and" else (out | m)
        return out
    dtype = next(m.dtype for m in ms if m.dtype != torch.bool)
    fs = [to_float(m, dtype) for m in ms]
    out = fs[0]
    for f in fs[1:]:
        out = (out + f) if op == "and" else torch.maximum(out, f)
    return out
