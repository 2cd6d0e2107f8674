"""DeepSpeed-Ulysses sequence parallelism (Jacobs et al. 2023, arXiv:2309.14509).

Each rank holds a shard of the sequence for all H heads. One all-to-all trades it for the whole
sequence of H/P heads, attention runs on one process (any score without learned tensors, every
backend :func:`attnkit.functional.attention` dispatches to), and a second all-to-all trades back:

``(B, H, L/P, E) --all_to_all--> (B, H/P, L, E) --attention--> (B, H/P, L, Ev) --all_to_all--> (B, H, L/P, Ev)``

Communication per rank is O(B·H·L·E / P) per all-to-all, independent of P's ring of steps; it needs
H (and the key heads Hk) divisible by P, and a backend with all_to_all (NCCL; gloo in torch >= 2.6).
Gradients flow through ``torch.distributed.nn.functional.all_to_all``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor

from ..core.scores import Score, get_score
from ..functional.attention import attention
from .group import agree_across_ranks, require_collective, resolve_group, shape_of
from .layout import _assemble, check_layout, chunk_ids, unshard_sequence

__all__ = ["ulysses_attention"]


def _seq_to_heads(x: Tensor, layout: str, P: int, group: Optional[dist.ProcessGroup]) -> Tensor:
    """(B, H, L/P, E) sequence shard -> (B, H/P, L, E) head shard, positions in natural order."""
    sends = [t.contiguous() for t in x.chunk(P, dim=1)]  # P x (B, H/P, L/P, E)
    recv = dist_fn.all_to_all([torch.empty_like(sends[0]) for _ in range(P)], sends, group=group)
    return _assemble(list(recv), 2, layout, P)  # (B, H/P, L, E)


def _heads_to_seq(x: Tensor, layout: str, P: int, group: Optional[dist.ProcessGroup]) -> Tensor:
    """(B, H/P, L, Ev) head shard -> (B, H, L/P, Ev) sequence shard (the inverse of :func:`_seq_to_heads`)."""
    n = len(chunk_ids(layout, 0, P))
    size = x.shape[2] // (n * P)
    sends = []
    for r in range(P):
        parts = [x.narrow(2, c * size, size) for c in chunk_ids(layout, r, P)]
        sends.append(torch.cat(parts, 2).contiguous())  # (B, H/P, L/P, Ev)
    recv = dist_fn.all_to_all([torch.empty_like(sends[0]) for _ in range(P)], sends, group=group)
    return torch.cat(list(recv), 1)  # (B, H, L/P, Ev)


def _check(what: str, P: int, rank: int, q: Any, k: Any, v: Any, score: Any, score_params: Any, layout: Any,
           mask: Any) -> Score:
    """This rank's checks of :func:`ulysses_attention`'s arguments (no collective); the score."""
    check_layout(layout)
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor) or t.dim() != 4:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{what}: {name} must be a 4-D (B, H, N, E) tensor shard, got {got}")
    sc = get_score(score, **dict(score_params or {}))
    held = [n for n, t in vars(sc).items() if isinstance(t, Tensor)]
    if held:
        raise ValueError(f"{what}: score {sc.name!r} holds tensors ({', '.join(held)}) that would have to be cut "
                         "by head; use ring_attention, which runs every score")
    H, Hk = q.shape[1], k.shape[1]
    if H % P or Hk % P:
        raise ValueError(f"{what}: {H} query heads and {Hk} key heads must both divide by the {P} ranks; use "
                         "ring_attention, which splits the sequence only")
    n = len(chunk_ids(layout, rank, P))
    if q.shape[2] % n or k.shape[2] % n:
        raise ValueError(f"{what}: a {layout!r} shard holds {n} chunks; q has {q.shape[2]} and k {k.shape[2]} "
                         "positions (cut them with shard_sequence)")
    if mask is not None and (not isinstance(mask, Tensor) or mask.dtype != torch.bool
                             or mask.shape != (q.shape[0], k.shape[2])):
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{what}: mask must be this rank's bool key mask (B, S) = ({q.shape[0]}, {k.shape[2]}), "
                         f"got {got}")
    return sc


def ulysses_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    score: str | Score = "scaled_dot",
    score_params: Mapping[str, Any] | None = None,
    causal: bool | str = False,
    layout: str = "zigzag",
    mask: Optional[Tensor] = None,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
    group: Optional[dist.ProcessGroup] = None,
) -> Tensor:
    """This rank's shard (B, H, L/P, Ev) of full attention, by two all-to-alls (see the module docstring).

    Arguments as :func:`attnkit.distributed.ring_attention`; ``mask`` is this rank's (B, S/P) bool key
    mask. Scores that learn tensors (additive, general) are refused: their per-head tensors would have
    to be cut to each rank's heads; :func:`ring_attention` runs them.
    """
    what = "ulysses_attention"
    group, P, rank = resolve_group(group, what)
    require_collective(group, "all_to_all", what, instead="ring_attention, which needs only isend/irecv")
    error: Optional[Exception] = None
    sc: Optional[Score] = None
    try:  # every local check; a refusal on one rank is announced to all by agree_across_ranks
        sc = _check(what, P, rank, q, k, v, score, score_params, layout, mask)
    except (ValueError, TypeError) as e:
        error = e
    agree_across_ranks(group, what, {"q": shape_of(q), "k": shape_of(k), "v": shape_of(v), "mask": shape_of(mask)},
                       error=error)
    qh, kh, vh = (_seq_to_heads(t, layout, P, group) for t in (q, k, v))  # (B, H/P, L, E)
    full_mask = None
    if mask is not None:
        full_mask = unshard_sequence(mask.to(torch.uint8), 1, layout, group).bool()[:, None, None, :]  # (B,1,1,S)
    out = attention(qh, kh, vh, score=sc, causal=causal, mask=full_mask, dropout_p=dropout_p, scale=scale)
    return _heads_to_seq(out, layout, P, group)  # (B, H, L/P, Ev)
