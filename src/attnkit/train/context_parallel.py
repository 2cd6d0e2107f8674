"""Context-parallel training: each rank holds a shard of every sequence of its rows (``--context-parallel C``).

Ring attention (Liu et al. 2023, arXiv:2310.01889) in the zigzag layout (Brandon et al. 2023,
arXiv:2311.09431) inside data-parallel training (Li et al. 2020, arXiv:2006.15704). The W ranks
of the job form a grid of D = W / C data shards by C sequence shards:

* context-parallel groups of consecutive ranks: ranks ``[C g, C (g + 1))`` are group g, and rank r
  holds shard ``r mod C`` of every sequence (its zigzag chunks ``r mod C`` and ``2C - 1 - r mod C``
  of the 2C chunks; the targets are cut the same way and positions come from ``shard_positions``);
* data shard ``d = r // C`` of D: every rank of group g trains on the same rows of the global batch,
  ``[n d / D, n (d + 1) / D)`` (:func:`attnkit.train.distributed.shard_rows`).

The loss is the mean over every token of the global batch. Rank r computes ``l_r``, the mean over
its ``n_r`` tokens (its rows, its positions); one all-reduce gives ``N = Σ_r n_r`` and each rank
back-propagates ``l_r · W n_r / N``. The gradients are all-reduced over the WHOLE world (DDP over
every rank, which averages: ``(1/W) Σ_r ∇(l_r W n_r / N) = ∇ Σ_r n_r l_r / N``), not by DDP over the
data-parallel group plus a second all-reduce over the context-parallel group: the parameters are
replicated on every rank and each rank's local gradient already holds the whole contribution of
its own positions (the ring's backward sends the dK / dV of every key block home to the rank that
holds it), so the gradient of the global loss is the plain sum over all W ranks, one bucketed
all-reduce that DDP overlaps with the backward. The ring runs on its own process groups (one per
context-parallel group, made with ``new_subgroups_by_enumeration`` even when C = W), so its
sends and receives never share a group with DDP's all-reduces.

Validation, the test split and checkpoints run on rank 0 on whole sequences, outside the
context-parallel block (the model itself is never changed): a checkpoint is the usual one, and a
run resumes at any C (1 included) and any world size.

With ``fsdp`` the parameters are sharded over the whole world instead (FSDP2's reduce-scatter
averages over every rank, as DDP does, so the weighting is the same).

Errors raised before any collective, the same on every rank: C not a positive int, C > 1 on one
process, C not dividing the world, a model without context-parallel support
(:func:`supporting_models` names those that have it), a sequence length that does not cut into 2C
chunks.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from torch import nn

from ..distributed.context import ContextParallel
from ..distributed.layout import num_chunks
from ..models.registry import MODELS
from .distributed import DistContext, DistributedError

__all__ = ["supporting_models", "check_size", "check_context_parallel", "check_world", "enable_context_parallel",
           "LAYOUT"]

#: how sequences are cut: zigzag balances the causal work across the ranks of a group
LAYOUT = "zigzag"
_LAUNCH = ("attnkit train --nproc N --context-parallel C ... (or torchrun --standalone --nproc-per-node N "
           "-m attnkit train --context-parallel C ...)")
#: (id of the world group, C) -> (that world group, this rank's context-parallel group); holding the world
#: keeps its id from naming a later one
_GROUPS: dict[tuple[int, int], tuple[Any, Any]] = {}


def supporting_models() -> list[str]:
    """Registered models whose forward runs under context parallelism (``supports_context_parallel``)."""
    return [name for name in MODELS.canonical() if getattr(MODELS.get(name), "supports_context_parallel", False)]


def _choices(values: list[int]) -> str:
    """``[1, 2, 4]`` -> ``"1, 2 or 4"`` (after ``context_parallel=``, which the CLI shows as its flag)."""
    return ", ".join(map(str, values[:-1])) + (" or " if len(values) > 1 else "") + str(values[-1])


def check_size(size: Any) -> int:
    """``size`` (C) as a positive int, or the error that names it."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DistributedError(f"context_parallel must be a positive int (the processes that share every "
                               f"sequence), got {size!r}")
    return size


def check_context_parallel(model: nn.Module, task: Any, size: Any) -> int:
    """``size`` (C) checked against the model and the task's sequences; no process group needed."""
    size = check_size(size)
    if size == 1:
        return size
    if not getattr(model, "supports_context_parallel", False):
        name = getattr(getattr(model, "config", None), "model", type(model).__name__)
        raise DistributedError(f"context_parallel={size}: the {name!r} model has no context-parallel forward; "
                               f"models that have one: {', '.join(supporting_models())} (or context_parallel=1: "
                               "data parallelism alone)")
    length = getattr(task, "block_size", None) or getattr(model, "block_size", None)
    chunks = num_chunks(LAYOUT, size)
    if length is not None and length % chunks:
        fits = [c for c in range(1, min(length // 2, 16) + 1) if length % (2 * c) == 0]
        raise DistributedError(
            f"context_parallel={size}: sequences of {length} positions do not cut into the {LAYOUT} layout's "
            f"{chunks} equal chunks (2 per process); use context_parallel={_choices(fits)} or a block size that is a "
            f"multiple of {chunks} (the task option block_size={length + (-length) % chunks})")
    return size


def check_world(size: int, world: int) -> None:
    """``size`` (C) divides the ``world`` processes into data shards of C; the check needs no process group
    (the CLI runs it for ``--nproc`` before any process starts, every rank again in :func:`enable_context_parallel`)."""
    if world % size:
        divisors = [c for c in range(1, world + 1) if world % c == 0]
        raise DistributedError(f"context_parallel={size} does not divide the {world} processes (the world is "
                               f"data shards x context_parallel); use context_parallel={_choices(divisors)} or "
                               f"nproc={world + (-world) % size}")


def enable_context_parallel(ctx: DistContext, size: Any, *, model: nn.Module, task: Any) -> DistContext:
    """Make ``ctx`` split every sequence of its rows across groups of ``size`` consecutive ranks.

    Every check runs before the one collective (the groups' creation); ``size=1`` leaves the
    context data-parallel only (and undoes an earlier :func:`enable_context_parallel` of the same process).
    """
    size = check_context_parallel(model, task, size)
    if size == 1:
        if ctx.cp is not None:
            ctx.cp, ctx.dp_rank, ctx.dp_world = None, None, None
        return ctx
    if not ctx.active:
        raise DistributedError(f"context_parallel={size} splits every sequence across {size} processes, and this "
                               f"is one process; start the run with {_LAUNCH}")
    check_world(size, ctx.world)
    if ctx.group is not None:
        raise DistributedError("context_parallel makes its own process groups; the context's data-parallel group "
                               "was set by the caller: leave DistContext.group None")
    key = (id(dist.group.WORLD), size)
    if key not in _GROUPS:  # every rank creates every group, in the same order
        ranks = [list(range(g * size, (g + 1) * size)) for g in range(ctx.world // size)]
        _GROUPS[key] = (dist.group.WORLD, dist.new_subgroups_by_enumeration(ranks)[0])
    ctx.cp = ContextParallel(group=_GROUPS[key][1], layout=LAYOUT)
    ctx.dp_rank, ctx.dp_world = ctx.rank // size, ctx.world // size
    return ctx
