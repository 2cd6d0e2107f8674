"""Trainings on several processes for the DDP tests: ranks started by torch.multiprocessing (gloo), or
this file run by torchrun's elastic agent (``attnkit.train.distributed.launch``).

A job is a dict: ``{"kind": "train" | "resume", "out": DIR, "steps": N, "model": "seq2seq" | "gpt",
**train options}``; :func:`run_job` runs one the same way in one process, so a test compares the
two. One thread per process, so runs match bit for bit.

    python ddp_worker.py OUT STEPS KILL_RANK KILL_STEP   # under the elastic agent: KILL_RANK dies at KILL_STEP
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import torch

from attnkit.data import get_task
from attnkit.models import build_model, model_config_for_task
from attnkit.train import load_checkpoint, resume_run, train

REVERSE = ("reverse", dict(train=97, valid=8, test=8, min_len=2, max_len=4))
TASKS = {"seq2seq": REVERSE, "dropout": REVERSE, "gpt": ("shakespeare", dict(block_size=16, eval_tokens=256))}
#: kind -> (registered model, its fields); "dropout": the seq2seq with dropout 0.3 (ranks draw differently)
MODELS = {"seq2seq": ("seq2seq", dict(hidden_dim=16, embed_dim=8, dropout=0.0, attention="bahdanau")),
          "dropout": ("seq2seq", dict(hidden_dim=16, embed_dim=8, dropout=0.3, attention="bahdanau")),
          "gpt": ("gpt", dict(dim=16, num_layers=2, num_heads=2, dropout=0.0))}
RUN = dict(batch_size=16, eval_every=5, eval_examples=8, warmup=2, progress=False, lr=3e-3)


def build(kind: str = "seq2seq"):
    """(task, model): a small task and model of ``kind``, initialised from seed 7."""
    name, opts = TASKS[kind]
    task = get_task(name, **opts)
    torch.manual_seed(7)
    model, fields = MODELS[kind]
    return task, build_model(model_config_for_task(model, task, **fields))


def run_job(job: dict) -> dict:
    job = dict(job)
    kind, out, steps, model = job.pop("kind"), job.pop("out"), job.pop("steps"), job.pop("model", "seq2seq")
    if kind == "resume":
        return resume_run(out, steps=steps, progress=False, **job)
    if kind == "load_dcp":  # FSDP2-shard a fresh model, load OUT/last.dcp into it, save it to OUT.loaded.safetensors
        return _load_dcp(out, steps, model)
    task, net = build(model)
    return train(task, net, steps=steps, seed=7, out_dir=out, **{**RUN, **job})


def _load_dcp(out: str, step: int, kind: str) -> dict:
    import torch.distributed as dist
    from safetensors.torch import save_file

    from attnkit.train import make_optimizer
    from attnkit.train.distributed import setup
    from attnkit.train.sharded import full_state, load_sharded, shard_model

    setup()
    _, net = build(kind)
    opt = shard_model(net, make_optimizer(net.parameters(), lr=1e-3), lambda ps: make_optimizer(ps, lr=1e-3))
    assert load_sharded(Path(out), net, opt, step)
    weights, optim = full_state(net, opt, optim=True)  # gathered on rank 0 (empty elsewhere)
    if dist.get_rank() == 0:
        save_file({**{f"model/{k}": v for k, v in weights.items()}, **optim[0]}, out + ".loaded.safetensors")
    return {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank: int, world: int, port: int, jobs: list[dict]) -> None:
    """One rank of a gloo group started by ``torch.multiprocessing.spawn``: torchrun's variables, then the jobs."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    try:
        for job in jobs:
            run_job(job)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(world: int, jobs: list[dict]) -> None:
    """``jobs`` one after the other on ``world`` ranks (spawned processes)."""
    import torch.multiprocessing as mp

    mp.spawn(rank_main, args=(world, free_port(), jobs), nprocs=world, join=True)


def last_weights(out) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(out, "last")
    return {k: v for k, v in tensors.items() if k.startswith("model/")}


def killed_main(out: str, steps: int, kill_rank: int, kill_step: int) -> int:
    """Under the elastic agent: train; rank ``kill_rank`` kills itself (SIGKILL) after step ``kill_step``."""
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])

    def callback(step: int, metrics: dict) -> None:
        if rank == kill_rank and step == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)

    task, net = build("seq2seq")
    train(task, net, steps=steps, seed=7, out_dir=out, callback=callback, **{**RUN, "eval_every": 4})
    return 0


if __name__ == "__main__":
    a = sys.argv[1:]
    sys.exit(killed_main(a[0], int(a[1]), int(a[2]), int(a[3])))
