"""Context-parallel trainings for tests/train/test_distributed_cp.py: ranks started by torch.multiprocessing
(gloo) with torchrun's variables, each running the jobs of :mod:`tests.train.ddp_worker` (``run_job``,
whose keyword ``context_parallel`` reaches ``train()``).

A world of 4 on a machine of 2 cores is described as 2 nodes of 2 processes (``LOCAL_WORLD_SIZE=2``,
``LOCAL_RANK = rank mod 2``): ``setup()`` refuses more processes per node than cores, as torchrun
on one such node would, and the ranks, groups and collectives are those of a 4-process job.
"""

from __future__ import annotations

import os

import torch

from . import ddp_worker as W


def rank_main(rank: int, world: int, port: int, per_node: int, jobs: list[dict]) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank % per_node),
                      LOCAL_WORLD_SIZE=str(per_node), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    try:
        for job in jobs:
            W.run_job(job)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(world: int, jobs: list[dict], *, per_node: int = 2) -> None:
    """``jobs`` one after the other on ``world`` ranks, ``per_node`` of them per (simulated) node."""
    import torch.multiprocessing as mp

    mp.spawn(rank_main, args=(world, W.free_port(), per_node, jobs), nprocs=world, join=True)
