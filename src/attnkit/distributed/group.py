"""Process groups for context parallelism: checks that fail before any collective can hang.

Every entry point of :mod:`attnkit.distributed` first asks :func:`resolve_group` (is
``torch.distributed`` initialised, is ``group`` a process group this rank belongs to) and
:func:`require_collective` (does the group's backend implement the collective), and, for
calls whose shards must agree across ranks, :func:`agree_across_ranks` (one small
``all_gather`` of the shard shapes, so that a mismatch raises the same error on every rank
instead of leaving one rank waiting in a send that never matches).

:class:`RingComm` is the ring of Liu et al. 2023 (Ring Attention, arXiv:2310.01889): rank r sends
to r + 1 and receives from r - 1 (mod P), every exchange one ``batch_isend_irecv`` that runs
while the caller computes, waited on only when the next block is needed.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "resolve_group",
    "require_collective",
    "agree_across_ranks",
    "shape_of",
    "RingComm",
    "RingStats",
    "ring_stats",
    "current_stats",
    "COLLECTIVES",
]

#: backend name -> the collectives of it that attnkit.distributed uses and that it implements
#: (gloo in torch >= 2.6 implements all_to_all; ring attention needs only isend/irecv)
COLLECTIVES: dict[str, frozenset[str]] = {
    "gloo": frozenset({"isend_irecv", "all_gather", "all_reduce", "all_to_all"}),
    "nccl": frozenset({"isend_irecv", "all_gather", "all_reduce", "all_to_all"}),
    "mpi": frozenset({"isend_irecv", "all_gather", "all_reduce", "all_to_all"}),
    "ucc": frozenset({"isend_irecv", "all_gather", "all_reduce", "all_to_all"}),
    "xccl": frozenset({"isend_irecv", "all_gather", "all_reduce", "all_to_all"}),
}


def resolve_group(group: Optional[dist.ProcessGroup], what: str) -> tuple[Optional[dist.ProcessGroup], int, int]:
    """(group, world size P, this rank's index in it), or a ValueError naming the fix.

    ``group=None`` means the default (world) group, which must have been initialised.
    """
    if not dist.is_available():
        raise ValueError(f"{what} needs torch.distributed, which this torch build lacks; install a torch "
                         "built with distributed support")
    if not dist.is_initialized():
        raise ValueError(
            f"{what}: torch.distributed is not initialised; call torch.distributed.init_process_group('gloo' "
            "or 'nccl', ...) first (torchrun sets the environment for init_method='env://'), then pass "
            "group=None for the world or a group from torch.distributed.new_group"
        )
    if group is not None and not isinstance(group, dist.ProcessGroup):
        raise TypeError(f"{what}: group must be a torch.distributed.ProcessGroup or None (the world), got "
                        f"{type(group).__name__}")
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError(f"{what}: this process (global rank {dist.get_rank()}) is not a member of group; "
                         "call it only on the ranks the group was created with")
    return group, dist.get_world_size(group), rank


def require_collective(group: Optional[dist.ProcessGroup], collective: str, what: str,
                       instead: str = "") -> None:
    """Raise a ValueError if the backend of ``group`` does not implement ``collective``."""
    backend = str(dist.get_backend(group)).lower()
    names = set()
    for part in backend.replace(",", " ").split():  # "cpu:gloo,cuda:nccl" for a group of two backends
        names.add(part.split(":")[-1])
    if not any(collective in COLLECTIVES.get(n, frozenset()) for n in names):
        known = ", ".join(sorted(n for n, c in COLLECTIVES.items() if collective in c))
        raise ValueError(
            f"{what} needs {collective}, which the process group's backend {backend!r} does not implement; "
            f"initialise the group with one of: {known}" + (f", or use {instead}" if instead else "")
        )


def shape_of(x: object) -> tuple[int, ...]:
    """A tensor's shape for :func:`agree_across_ranks`; (-1,) for anything else (None: no tensor)."""
    return tuple(x.shape) if isinstance(x, Tensor) else (-1,)


def agree_across_ranks(group: Optional[dist.ProcessGroup], what: str, fields: dict[str, Sequence[int]],
                       error: Optional[Exception] = None) -> None:
    """All-gather ``fields`` (name -> small integer tuple, e.g. a shape) and whether this rank's own
    checks passed (``error``: the exception they raised, None if they passed), then raise on every
    rank if any rank failed its checks or differs: a rank whose inputs were refused re-raises its own
    error, the others name it. Two all_gathers of small int64 vectors; never leaves a rank waiting."""
    flat: list[int] = [0 if error is None else 1]
    for vals in fields.values():
        flat.append(len(vals))
        flat.extend(int(x) for x in vals)
    P = dist.get_world_size(group)
    n = torch.tensor([len(flat)], dtype=torch.int64)
    sizes = [torch.zeros_like(n) for _ in range(P)]
    dist.all_gather(sizes, n, group=group)
    width = int(max(s.item() for s in sizes))
    mine = torch.full((width,), -(2**62), dtype=torch.int64)
    mine[: len(flat)] = torch.tensor(flat, dtype=torch.int64)
    gathered = [torch.empty_like(mine) for _ in range(P)]
    dist.all_gather(gathered, mine, group=group)
    rows = [g.tolist() for g in gathered]
    if error is not None:
        raise error
    refused = [r for r, row in enumerate(rows) if row[0] != 0]
    if refused:
        raise ValueError(f"{what}: rank(s) {', '.join(map(str, refused))} refused their inputs (their error says "
                         "why); every rank must pass valid shards of the same tensors")
    if all(r == rows[0] for r in rows):
        return
    per_rank = []
    for r, row in enumerate(rows):
        i, parts = 1, []
        for name in fields:
            if i >= len(row) or row[i] < 0:
                break
            k = row[i]
            parts.append(f"{name}={tuple(row[i + 1:i + 1 + k])}")
            i += 1 + k
        per_rank.append(f"rank {r}: " + ", ".join(parts))
    raise ValueError(
        f"{what}: the shards differ across ranks ({'; '.join(per_rank)}); every rank must pass its shard of the "
        "same tensors, cut by shard_sequence with the same layout"
    )


@dataclasses.dataclass
class RingStats:
    """Seconds spent in a ring: waiting for transfers (``comm_wait_s``), computing blocks
    (``compute_s``), exchanges started (``exchanges``), bytes sent (``bytes_sent``)."""

    comm_wait_s: float = 0.0
    compute_s: float = 0.0
    exchanges: int = 0
    bytes_sent: int = 0


_STATS: ContextVar[Optional[RingStats]] = ContextVar("attnkit_ring_stats", default=None)


@contextmanager
def ring_stats() -> Iterator[RingStats]:
    """Record the ring's waiting and computing time inside the block (what the benchmark reports)::

        with ring_stats() as st:
            ring_attention(q, k, v).sum().backward()
        st.comm_wait_s / (st.comm_wait_s + st.compute_s)
    """
    st = RingStats()
    token = _STATS.set(st)
    try:
        yield st
    finally:
        _STATS.reset(token)


def current_stats() -> Optional[RingStats]:
    """The :class:`RingStats` a :func:`ring_stats` block is recording into (None outside one)."""
    return _STATS.get()


class _Pending:
    """Tensors being received; :meth:`wait` returns them once every request has completed."""

    def __init__(self, recv: list[Tensor], reqs: list, keep: list[Tensor]) -> None:
        self.recv, self.reqs, self.keep = recv, reqs, keep

    def wait(self) -> list[Tensor]:
        st = _STATS.get()
        t0 = time.perf_counter()
        for r in self.reqs:
            r.wait()
        if st is not None:
            st.comm_wait_s += time.perf_counter() - t0
        self.keep = []
        return self.recv


class RingComm:
    """Send to the next rank, receive from the previous one, in one ``batch_isend_irecv``."""

    def __init__(self, group: Optional[dist.ProcessGroup], P: int, rank: int) -> None:
        g = group if group is not None else dist.group.WORLD
        self.group = group
        self.next = dist.get_global_rank(g, (rank + 1) % P)
        self.prev = dist.get_global_rank(g, (rank - 1) % P)

    def exchange(self, tensors: Sequence[Tensor]) -> _Pending:
        """Start sending ``tensors`` to the next rank and receiving as many of the same shapes and
        dtypes from the previous one; returns at once."""
        ops, recv, keep = [], [], []
        st = _STATS.get()
        for t in tensors:
            t = t.contiguous()
            r = torch.empty_like(t)
            ops.append(dist.P2POp(dist.isend, t, self.next, self.group))
            ops.append(dist.P2POp(dist.irecv, r, self.prev, self.group))
            recv.append(r)
            keep.append(t)
            if st is not None:
                st.bytes_sent += t.numel() * t.element_size()
        if st is not None:
            st.exchanges += 1
        return _Pending(recv, dist.batch_isend_irecv(ops), keep)
