"""Context parallelism for modules: each rank of a group holds a shard of every sequence.

``MultiHeadAttention(..., context_parallel=cp)`` and ``GPT(..., context_parallel=cp)`` take a
:class:`ContextParallel` (or a bare process group), or run inside ``with context_parallel(group):``.
Self-attention then calls :func:`~attnkit.distributed.ring_attention` (or
:func:`~attnkit.distributed.ulysses_attention`) on the shard, with RoPE / learned positions read
at the shard's global positions (:meth:`ContextParallel.positions`).

Gradients: each rank's loss covers its own positions; the parameters are replicated, so after
``backward()`` their gradients are averaged across the group (:func:`average_gradients`, or DDP
over the group), exactly as data-parallel training averages them. With each rank's loss the mean
over its (equally many) positions, the average is the single-process gradient of the mean loss.

Example (2 ranks)::

    >>> cp = ContextParallel(group=None, layout="zigzag")
    >>> gpt = GPT(cfg, context_parallel=cp)
    >>> loss, _ = gpt.loss(batch)        # batch: the full (B, T) on every rank
    >>> loss.backward(); average_gradients(gpt)
"""

from __future__ import annotations

import contextlib
import dataclasses
from contextvars import ContextVar
from typing import Any, Iterator, Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .group import require_collective, resolve_group
from .layout import check_layout, shard_positions, shard_sequence, unshard_sequence
from .ring import ring_attention
from .ulysses import ulysses_attention

__all__ = ["ContextParallel", "context_parallel", "current_context_parallel", "as_context_parallel",
           "average_gradients", "all_reduce_metric", "use_context_parallel", "METHODS"]

METHODS = ("ring", "ulysses")


@dataclasses.dataclass(frozen=True)
class ContextParallel:
    """Which group shares the sequence, how it is cut (``layout``) and how attention crosses it (``method``)."""

    group: Optional[dist.ProcessGroup] = None
    layout: str = "zigzag"
    method: str = "ring"

    def __post_init__(self) -> None:
        check_layout(self.layout)
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")

    @property
    def world_size(self) -> int:
        return resolve_group(self.group, "context_parallel")[1]

    def shard(self, x: Tensor, dim: int) -> Tensor:
        return shard_sequence(x, dim, self.layout, self.group)

    def unshard(self, x: Tensor, dim: int) -> Tensor:
        return unshard_sequence(x, dim, self.layout, self.group)

    def positions(self, n: int, device: Any = None) -> Tensor:
        """The global positions (n / P,) of this rank's shard of a length-``n`` sequence."""
        return shard_positions(n, self.layout, self.group, device)

    def attention(self, q: Tensor, k: Tensor, v: Tensor, **options: Any) -> Tensor:
        """This rank's output shard: ring_attention or ulysses_attention with ``options``."""
        fn = ring_attention if self.method == "ring" else ulysses_attention
        return fn(q, k, v, layout=self.layout, group=self.group, **options)


_CURRENT: ContextVar[Optional[ContextParallel]] = ContextVar("attnkit_context_parallel", default=None)


def as_context_parallel(value: Any) -> Optional[ContextParallel]:
    """None, a :class:`ContextParallel` or a process group (ring, zigzag) -> ContextParallel or None."""
    if value is None or isinstance(value, ContextParallel):
        return value
    if isinstance(value, dist.ProcessGroup):
        return ContextParallel(group=value)
    raise TypeError(f"context_parallel must be a ContextParallel, a torch.distributed.ProcessGroup or None, got "
                    f"{type(value).__name__}")


@contextlib.contextmanager
def context_parallel(group: Optional[dist.ProcessGroup] = None, *, layout: str = "zigzag",
                     method: str = "ring") -> Iterator[ContextParallel]:
    """Inside the block, every ``MultiHeadAttention`` self-attention and ``GPT`` runs context-parallel."""
    resolve_group(group, "context_parallel")
    cp = ContextParallel(group, layout, method)
    token = _CURRENT.set(cp)
    try:
        yield cp
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def use_context_parallel(cp: Optional[ContextParallel]) -> Iterator[None]:
    """Make ``cp`` the current one inside the block (a model hands its own to its layers)."""
    token = _CURRENT.set(cp)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_context_parallel() -> Optional[ContextParallel]:
    """The :class:`ContextParallel` of the innermost ``context_parallel`` block (None outside)."""
    return _CURRENT.get()


def average_gradients(module: nn.Module, group: Optional[dist.ProcessGroup] = None) -> None:
    """Average every parameter's gradient over ``group`` (one all_reduce per parameter with a gradient)."""
    group, P, _ = resolve_group(group, "average_gradients")
    require_collective(group, "all_reduce", "average_gradients")
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, group=group)
            p.grad.div_(P)


def all_reduce_metric(value: float, group: Optional[dist.ProcessGroup] = None) -> float:
    """The mean of ``value`` over the group (for logging a loss each rank computed on its shard)."""
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t, group=group)
    return float(t) / dist.get_world_size(group)
