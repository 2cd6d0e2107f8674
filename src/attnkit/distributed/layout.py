"""Sequence layouts for context parallelism: which positions each rank holds.

* ``"contiguous"``: the sequence cut into P chunks, rank r holds chunk r (Liu et al. 2023,
  Ring Attention, arXiv:2310.01889). Under causal masking rank P-1 does P times the work of rank 0.
* ``"zigzag"``: the sequence cut into 2P chunks, rank r holds chunks r and 2P-1-r (the
  load-balanced layout of Brandon et al. 2023, Striped Attention, arXiv:2311.09431, in the zigzag
  form of ring-flash-attention and Megatron's context parallelism): under causal masking every
  rank computes the same number of (query, key) pairs.

``shard_sequence(x, dim)`` cuts a full tensor into this rank's shard; ``unshard_sequence(x, dim)``
gathers the shards back into the full tensor on every rank (differentiable: the backward sums the
gradient each rank's copy receives, as ``torch.distributed.nn.functional.all_gather`` does);
``shard_positions(n)`` gives the positions this rank holds (what RoPE / learned positions read).

Example (2 ranks, 8 positions, zigzag: rank 0 holds 0 1 6 7, rank 1 holds 2 3 4 5)::

    >>> shard_sequence(torch.arange(8), 0)      # on rank 1
    tensor([2, 3, 4, 5])
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor

from .group import agree_across_ranks, require_collective, resolve_group, shape_of

__all__ = ["LAYOUTS", "chunk_ids", "num_chunks", "shard_sequence", "unshard_sequence", "shard_positions",
           "check_layout"]

LAYOUTS = ("zigzag", "contiguous")


def check_layout(layout: object) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout  # type: ignore[return-value]


def num_chunks(layout: str, P: int) -> int:
    """Chunks the full sequence is cut into: 2P for zigzag, P for contiguous."""
    return 2 * P if check_layout(layout) == "zigzag" else P


def chunk_ids(layout: str, rank: int, P: int) -> tuple[int, ...]:
    """The chunks rank ``rank`` holds, in the order they sit in its shard (ascending)."""
    return (rank, 2 * P - 1 - rank) if check_layout(layout) == "zigzag" else (rank,)


def _dim(x: Tensor, dim: int, what: str) -> int:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: x must be a torch.Tensor, got {type(x).__name__}")
    if not isinstance(dim, int) or isinstance(dim, bool) or not -x.dim() <= dim < max(1, x.dim()):
        raise ValueError(f"{what}: dim={dim!r} is not a dimension of a tensor of shape {tuple(x.shape)}")
    return dim % x.dim()


def _split_length(n: int, layout: str, P: int, what: str, name: str) -> int:
    c = num_chunks(layout, P)
    if n % c:
        raise ValueError(
            f"{what}: {name} has length {n}, which the {layout!r} layout cannot cut into {c} equal chunks "
            f"({'2 per rank' if layout == 'zigzag' else '1 per rank'} over {P} ranks); pad it to a multiple of "
            f"{c} (e.g. {n + (-n) % c}) or use a world size that divides it"
        )
    return n // c


def shard_sequence(x: Tensor, dim: int, layout: str = "zigzag", group: Optional[dist.ProcessGroup] = None) -> Tensor:
    """This rank's shard of the full tensor ``x`` along ``dim`` (see the module docstring)."""
    what = "shard_sequence"
    check_layout(layout)
    d = _dim(x, dim, what)
    _, P, rank = resolve_group(group, what)
    size = _split_length(x.shape[d], layout, P, what, f"dim {dim} of x {tuple(x.shape)}")
    parts = [x.narrow(d, c * size, size) for c in chunk_ids(layout, rank, P)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, d)


def shard_positions(n: int, layout: str = "zigzag", group: Optional[dist.ProcessGroup] = None,
                    device: torch.device | str | None = None) -> Tensor:
    """Positions (n / P,) of a length-``n`` sequence that this rank holds, in shard order."""
    return shard_sequence(torch.arange(n, device=device), 0, layout, group)


def _assemble(shards: list[Tensor], d: int, layout: str, P: int) -> Tensor:
    """The full tensor from every rank's shard (rank order)."""
    chunks: list[Optional[Tensor]] = [None] * num_chunks(layout, P)
    for r, s in enumerate(shards):
        ids = chunk_ids(layout, r, P)
        for c, part in zip(ids, s.chunk(len(ids), d)):
            chunks[c] = part
    return torch.cat(chunks, d)  # type: ignore[arg-type]


class _Unshard(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, d, layout, group, P, rank):  # type: ignore[override]
        shards = [torch.empty_like(x) for _ in range(P)]
        dist.all_gather(shards, x.contiguous(), group=group)
        ctx.d, ctx.layout, ctx.group, ctx.P, ctx.rank = d, layout, group, P, rank
        return _assemble(shards, d, layout, P)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        g = grad.contiguous().clone()
        dist.all_reduce(g, group=ctx.group)  # every rank's copy fed its own loss: their sum
        size = g.shape[ctx.d] // num_chunks(ctx.layout, ctx.P)
        parts = [g.narrow(ctx.d, c * size, size) for c in chunk_ids(ctx.layout, ctx.rank, ctx.P)]
        return (parts[0] if len(parts) == 1 else torch.cat(parts, ctx.d)), None, None, None, None, None


def unshard_sequence(x: Tensor, dim: int, layout: str = "zigzag",
                     group: Optional[dist.ProcessGroup] = None) -> Tensor:
    """The full tensor on every rank from each rank's shard ``x`` (the inverse of :func:`shard_sequence`).

    Differentiable: the gradient of the shard is the sum over ranks of the gradient of the
    matching positions of each rank's full copy (each rank's loss counts once). Shard shapes
    are checked to agree across ranks first.
    """
    what = "unshard_sequence"
    group, P, rank = resolve_group(group, what)
    require_collective(group, "all_gather", what)
    error: Optional[Exception] = None
    d = -1
    try:  # this rank's checks; a refusal on one rank is announced to all by agree_across_ranks
        check_layout(layout)
        d = _dim(x, dim, what)
        if layout == "zigzag" and x.shape[d] % 2:
            raise ValueError(f"{what}: a zigzag shard holds 2 chunks, so its length along dim {dim} must be even; "
                             f"got {x.shape[d]} (cut it with shard_sequence)")
    except (ValueError, TypeError) as e:
        error = e
    agree_across_ranks(group, what, {"x": shape_of(x), "dim": (d,)}, error=error)
    return _Unshard.apply(x, d, layout, group, P, rank)
