"""Tiles of scores: the one primitive every blocked kernel here recomputes.

``s[q0:q1, k0:k1] = mask(scale · pairwise(qp[q0:q1], kp[k0:k1]) + bias)``, after
the split of :mod:`attnkit.core.scores` (``project`` once per token,
``pairwise`` per tile), with ``score_mod`` / ``mask_mod`` / causal applied by
:func:`attnkit.core.reference.apply_masks` at the tile's offsets, so a
tile is exactly the matching block of the oracle's scores.

Shape legend: B batch, H heads, L queries, S keys, D projected features.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from ..core.masks import mask_index
from ..core.reference import apply_masks
from ..core.spec import AttentionSpec

__all__ = ["TileScorer", "blocks", "online_lse", "work_dtype", "exp_safe_lse"]


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype tiles accumulate in: float64 stays float64, everything else runs in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def exp_safe_lse(lse: Tensor) -> Tensor:
    """``lse`` with -inf (a row with no allowed key) replaced by +inf, so ``exp(s - lse) = 0`` there
    (never ``exp(-inf + inf) = NaN``): the weights, and their gradients, of such a row are 0.
    A NaN (a NaN input reached the row) stays NaN: NaN in, NaN out."""
    return torch.where(lse == float("-inf"), torch.full_like(lse, float("inf")), lse)


def blocks(n: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive blocks of ``size`` covering range(n)."""
    for a in range(0, n, size):
        yield a, min(a + size, n)


class TileScorer:
    """Masked, scaled score tiles of one attention call.

    ``spec`` supplies the score, scale, causal flag and score_mod / mask_mod;
    the mask is passed per tile (already sliced) so that a float mask can be an
    autograd leaf whose gradient is written back tile by tile. ``pairwise``
    replaces the score's own ``pairwise(qp, kp, *params)`` (a kernel with a
    closed form of it, e.g. :mod:`attnkit.backends.additive_tiles`).
    """

    def __init__(self, spec: AttentionSpec, pairwise: Callable[..., Tensor] | None = None) -> None:
        self.spec = spec
        # apply_masks without the mask: we add the (sliced) mask ourselves.
        self._nomask = dataclasses.replace(spec, mask=None)
        self.pairwise = spec.score.pairwise if pairwise is None else pairwise
        self.scale = spec.scale
        self.offset = 0 if spec.causal != "bottom_right" else spec.S - spec.L
        self.has_mods = spec.score_mod is not None or spec.mask_mod is not None or spec.causal is not None

    def visible(self, q0: int, q1: int, k0: int) -> bool:
        """False when causal hides every key of block k0.. from queries q0:q1."""
        return self.spec.causal is None or k0 <= q1 - 1 + self.offset

    def __call__(
        self, qp: Tensor, kp: Tensor, params: Sequence[Tensor], mask_tile: Tensor | None, q0: int, k0: int
    ) -> Tensor:
        """Scores (B, H, lq, sk) of qp (B, H, lq, D) against kp (B, H, sk, D)."""
        return self.finish(self.pairwise(qp, kp, *params), mask_tile, q0, k0)

    def finish(self, pair: Tensor, mask_tile: Tensor | None, q0: int, k0: int) -> Tensor:
        """Scale, score_mod, masks and causal on an unscaled pairwise tile (B, H, lq, sk)."""
        s = pair * self.scale  # (B, H, lq, sk)
        if self.has_mods:
            s = apply_masks(self._nomask, s, q0, k0)
        if mask_tile is not None:
            if mask_tile.dtype == torch.bool:
                s = s.masked_fill(~mask_tile, float("-inf"))
            else:
                s = s + mask_tile.to(s.dtype)
        return s

    def mask_tile(self, mask: Tensor | None, q0: int, q1: int, k0: int, k1: int) -> Tensor | None:
        return None if mask is None else mask[mask_index(mask, q0, q1, k0, k1)]


def online_lse(
    scorer: TileScorer,
    qp: Tensor,
    kp: Tensor,
    params: Sequence[Tensor],
    mask: Tensor | None,
    q0: int,
    q1: int,
    block_k: int,
) -> Tensor:
    """Log-sum-exp (B, H, q1-q0) of the scores of queries q0:q1 over all keys,
    accumulated over key blocks (never an (L, S) tensor); -inf for empty rows."""
    S = kp.shape[-2]
    B, H = qp.shape[:2]
    shape = (B, H, q1 - q0)
    m = torch.full(shape, float("-inf"), device=qp.device, dtype=work_dtype(qp.dtype))
    m_safe = torch.zeros_like(m)
    total = torch.zeros_like(m)
    for k0, k1 in blocks(S, block_k):
        if not scorer.visible(q0, q1, k0):
            break
        s = scorer(qp[:, :, q0:q1], kp[:, :, k0:k1], params, scorer.mask_tile(mask, q0, q1, k0, k1), q0, k0)
        m_new = torch.maximum(m, s.amax(-1).to(m.dtype))
        m_new_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        total = total * torch.exp(m - m_new_safe) + torch.exp(s - m_new_safe.unsqueeze(-1)).sum(-1)
        m, m_safe = m_new, m_new_safe
    # total = 0: no allowed key (-inf); a NaN total (a NaN input) stays NaN
    return torch.where(total != 0, m_safe + torch.log(total), torch.full_like(total, float("-inf")))
