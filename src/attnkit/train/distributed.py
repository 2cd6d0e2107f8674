"""Data-parallel training on ``torch.distributed``: the process group, DDP / FSDP2, and the launcher.

``torchrun --standalone --nproc-per-node N -m attnkit train TASK ...`` (or ``attnkit train --nproc N
TASK ...``, which starts torchrun's elastic agent through :func:`launch`) runs N copies of the same
training. :func:`setup` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and opens the process group: gloo on CPU, NCCL on CUDA with one
device per local rank (``cuda:LOCAL_RANK``). :func:`current` is the :class:`DistContext` the
training loop asks; without torchrun it is the one-process context and every method is the identity.

How a step is split (data parallelism, Li et al. 2020, "PyTorch Distributed", arXiv:2006.15704):

* ``batch_size`` is the GLOBAL batch, all ranks together. Every rank draws the same global batch
  (the epoch order is ``epoch_generator(seed, epoch)`` on every rank) and trains on its contiguous
  slice of rows ``[n r / P, n (r+1) / P)`` (:func:`shard_rows`), so the union over ranks is the
  one-process batch and a checkpoint's position (epoch, batches of the epoch) means the same thing
  at any world size: a run resumes with another number of processes.
* The loss is the mean over the global batch: rank r holds ``n_r`` targets and the mean ``l_r``
  over them; one all-reduce gives ``N = Σ n_r`` and DDP (Li et al. 2020) averages the gradients of
  ``l_r · P n_r / N``, which is the gradient of ``Σ_r n_r l_r / N``, the one-process loss of the
  global batch. A rank whose slice is empty (the last batch of an epoch with fewer rows than
  processes) runs one row with weight 0, so every rank joins every collective.
* Metrics are the same weighted means over ranks (``tokens`` their sum). Validation, the test
  split, logging, the progress bar, ``history.jsonl`` and checkpoints happen on rank 0 only; rank
  0's results are broadcast so every rank takes the same decisions (best checkpoint, ``stop_at``).
  A checkpoint is written by rank 0 between two barriers (:meth:`DistContext.on_main`): every rank
  has finished the step before it, and none goes on before it is committed.
* Random numbers: with more than one process each rank's generator is seeded from (seed, step,
  rank) before every step, so dropout differs across ranks and a resumed run draws what an
  uninterrupted one would, whatever the world size it was saved at.

FSDP2 (``fully_shard``, Zhao et al. 2023, arXiv:2304.11277) shards the parameters, gradients and
Adam moments of a Transformer model (each layer, then the root) across ranks: see
:mod:`attnkit.train.sharded`.

Failures: a rank that dies ends the job; torchrun's agent stops the other ranks and :func:`launch`
raises :class:`RankFailed` naming the rank, how it ended and the last checkpoint, which is intact
(checkpoints are committed atomically by rank 0). A broken environment (``--nproc`` larger than
the machine, torchrun's variables half set, a collective asked for without a process group) is a
:class:`DistributedError` raised before any collective, naming the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..distributed.context import ContextParallel, use_context_parallel
from . import sharded

__all__ = [
    "DistContext", "DistributedError", "RankFailed", "setup", "current", "launch", "check_nproc", "usable_cores",
    "shard_rows", "batch_rows", "torchrun_env", "is_main", "rank", "world_size", "barrier", "all_reduce_metrics",
    "TORCHRUN_VARS", "FromMain", "describe_failure",
]

#: what torchrun sets for every worker (LOCAL_WORLD_SIZE too, optional here)
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_LAUNCH = "torchrun --standalone --nproc-per-node N -m attnkit train ...  (or: attnkit train --nproc N ...)"


class DistributedError(ValueError):
    """A distributed run that cannot start: the environment, the world size, a missing process group."""


class RankFailed(RuntimeError):
    """A rank of a launched job failed; the message names it, how it ended and the last checkpoint."""


class FromMain(Exception):
    """Mixin of the errors re-raised on the other ranks when rank 0 failed (rank 0 reports it)."""


class _MainValueError(FromMain, ValueError):
    pass


class _MainOSError(FromMain, OSError):
    pass


class _MainRuntimeError(FromMain, RuntimeError):
    pass


# -- the machine and the environment --------------------------------------------------------------
def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_nproc(nproc: Any, device: str | torch.device | None = "cpu") -> int:
    """``nproc`` processes fit this machine: at most one per CPU core, or one per CUDA device."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise DistributedError(f"nproc must be a positive int, got {nproc!r}")
    kind = torch.device(device or "cpu").type
    if kind == "cuda":
        have = torch.cuda.device_count()
        if nproc > have:
            raise DistributedError(f"nproc={nproc} needs {nproc} CUDA devices (one per process); this machine has "
                                   f"{have}: use nproc={max(have, 1)}" + ("" if have else " or device='cpu'"))
        return nproc
    cores = usable_cores()
    if nproc > cores:
        raise DistributedError(f"nproc={nproc} processes on {cores} CPU core(s): each process needs a core of its "
                               f"own; use nproc={cores} or fewer")
    return nproc


def torchrun_env(environ: Optional[dict[str, str]] = None) -> Optional[dict[str, Any]]:
    """torchrun's variables as ints/strings, or None when none is set (a one-process run)."""
    env = os.environ if environ is None else environ
    given = [v for v in TORCHRUN_VARS if v in env]
    if not given:
        return None
    missing = [v for v in TORCHRUN_VARS if v not in env]
    if missing:
        raise DistributedError(f"torchrun's environment is incomplete: {', '.join(given)} set but "
                               f"{', '.join(missing)} missing; start the job with {_LAUNCH}")
    out: dict[str, Any] = {"MASTER_ADDR": env["MASTER_ADDR"]}
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
        if v not in env:
            continue
        try:
            out[v] = int(env[v])
        except ValueError:
            raise DistributedError(f"{v}={env[v]!r} is not an integer; start the job with {_LAUNCH}") from None
    out.setdefault("LOCAL_WORLD_SIZE", out["WORLD_SIZE"])
    if out["WORLD_SIZE"] < 1 or not 0 <= out["RANK"] < out["WORLD_SIZE"]:
        raise DistributedError(f"RANK={out['RANK']} WORLD_SIZE={out['WORLD_SIZE']}: need 0 <= RANK < WORLD_SIZE; "
                               f"start the job with {_LAUNCH}")
    if not 0 <= out["LOCAL_RANK"] < out["LOCAL_WORLD_SIZE"]:
        raise DistributedError(f"LOCAL_RANK={out['LOCAL_RANK']} with LOCAL_WORLD_SIZE={out['LOCAL_WORLD_SIZE']}: "
                               f"need 0 <= LOCAL_RANK < LOCAL_WORLD_SIZE; start the job with {_LAUNCH}")
    return out


# -- batches split into rows ---------------------------------------------------------------------
def _tensors(batch: Any) -> list[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        return [batch]
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return [v for f in dataclasses.fields(batch) if isinstance(v := getattr(batch, f.name), torch.Tensor)]
    if isinstance(batch, dict):
        return [v for v in batch.values() if isinstance(v, torch.Tensor)]
    if isinstance(batch, (tuple, list)):
        return [v for v in batch if isinstance(v, torch.Tensor)]
    return []


def batch_rows(batch: Any) -> int:
    """Rows (examples) of a batch: the first dimension of its tensors."""
    ts = [t for t in _tensors(batch) if t.dim() > 0]
    if not ts:
        raise TypeError(f"a batch of type {type(batch).__name__} cannot be split across processes: make it a "
                        "dataclass (or dict, tuple) of tensors whose first dimension is the batch")
    return int(ts[0].shape[0])


def _slice(batch: Any, lo: int, hi: int, n: int) -> Any:
    def cut(v: Any) -> Any:
        return v[lo:hi] if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n else v

    if isinstance(batch, torch.Tensor):
        return cut(batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: cut(getattr(batch, f.name)) for f in dataclasses.fields(batch)
                                             if f.init})
    if isinstance(batch, dict):
        return {k: cut(v) for k, v in batch.items()}
    return type(batch)(cut(v) for v in batch)


def shard_rows(batch: Any, rank: int, world: int) -> tuple[Any, int]:
    """(rank ``rank``'s rows of ``batch``, how many): the contiguous slice ``[n r / P, n (r+1) / P)``.

    A rank whose slice is empty gets row 0 and the count 0: it runs the step with weight 0.
    """
    n = batch_rows(batch)
    lo, hi = n * rank // world, n * (rank + 1) // world
    if hi == lo:
        return _slice(batch, 0, 1, n), 0
    return _slice(batch, lo, hi, n), hi - lo


# -- the context -----------------------------------------------------------------------------------
class _LossOf(nn.Module):
    """``forward(batch) = model.loss(batch)``: DDP wraps ``forward``, the loop calls ``loss``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> Any:
        return self.model.loss(batch)


@dataclass
class DistContext:
    """Where this process stands: rank, world size, its device; the collectives the loop needs.

    With ``world == 1`` (no torchrun) every method is the identity and nothing is communicated.
    ``group`` is the data-parallel group (None: every rank), in which this process is
    ``dp_rank`` of ``dp_world``: batches are split, losses weighted and gradients averaged
    across it; a job that also splits sequences (context parallelism) passes its own.
    ``cp``: every sequence of this rank's rows is split across ``cp.group`` and the forward runs
    inside ``use_context_parallel(cp)`` (set by :func:`attnkit.train.context_parallel.enable_context_parallel`,
    which keeps ``group`` the world and sets ``dp_rank = rank // C``, ``dp_world = world / C``).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    backend: Optional[str] = None
    fsdp: bool = False
    wrapped: Optional[nn.Module] = None  # DDP(_LossOf(model)) once wrap() ran
    group: Any = None
    dp_rank: Optional[int] = None  # None: rank
    dp_world: Optional[int] = None  # None: world
    cp: Optional[ContextParallel] = None  # context parallelism (train.context_parallel)

    @property
    def data_rank(self) -> int:
        return self.rank if self.dp_rank is None else self.dp_rank

    @property
    def data_world(self) -> int:
        return self.world if self.dp_world is None else self.dp_world

    @property
    def reduce_world(self) -> int:
        """The ranks gradients are averaged over (DDP's group): the loss weight's factor."""
        return self.world if self.group is None else dist.get_world_size(self.group)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """This rank's device: ``cuda:LOCAL_RANK`` for a CUDA run, the CPU otherwise."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def check_batch_size(self, batch_size: int) -> None:
        n = self.data_world
        if self.active and batch_size < n:
            raise DistributedError(f"batch_size={batch_size} is the global batch, split across {n} "
                                   f"processes; give every process a row: batch_size={n} or more")

    # -- the model -----------------------------------------------------------------------------
    def wrap(self, model: nn.Module, optimizer: torch.optim.Optimizer, make: Callable[[Any], torch.optim.Optimizer],
             *, resume: Optional[tuple[Path, int]] = None) -> torch.optim.Optimizer:
        """DDP over ``model.loss`` (rank 0's weights are broadcast to every rank here), or with ``fsdp``
        FSDP2 (:mod:`attnkit.train.sharded`; ``resume``: (run dir, step) whose DCP shards it loads).
        Returns the optimizer to train with (under FSDP a new one over the sharded parameters)."""
        if not self.active:
            return optimizer
        if self.fsdp:
            optimizer = sharded.shard_model(model, optimizer, make)
            if resume is not None and not sharded.load_sharded(resume[0], model, optimizer, resume[1]):
                raise DistributedError(f"an FSDP resume loads {resume[0]}/{sharded.DCP_NAME}, the shards written with "
                                       f"last.json (step {resume[1]}); they are missing or from another step: resume "
                                       "without FSDP (DDP reads the full checkpoint)")
            return optimizer
        from torch.nn.parallel import DistributedDataParallel as DDP

        dev = next(model.parameters()).device
        ids = [dev.index] if dev.type == "cuda" else None
        # static_graph: the same parameters take part in every step, and any a model leaves out of its loss
        # (a head it does not use) are found once, not searched for every step
        self.wrapped = DDP(_LossOf(model), device_ids=ids, static_graph=True, process_group=self.group)
        return optimizer

    def full_state(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, last: bool, out: Optional[Path],
                   step: int) -> Optional[tuple[dict, Optional[tuple]]]:
        """FSDP: the gathered weights (and optimizer state for ``last``, whose DCP shards every rank also
        writes); every rank joins. None without FSDP (rank 0 reads its own model)."""
        if not (self.active and self.fsdp):
            return None
        if last and out is not None:
            sharded.save_sharded(out, model, optimizer, step, rank=self.rank, barrier=barrier)
        return sharded.full_state(model, optimizer, optim=last)

    def load_weights(self, model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
        """Full weights into ``model`` (each rank keeps its shard under FSDP)."""
        if self.active and self.fsdp:
            sharded.load_full_weights(model, weights)
        else:
            model.load_state_dict(weights)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """``model.loss(batch)`` in one process; with P ranks: this rank's rows (and under ``cp`` its shard of
        every sequence), weighted to the mean over every token of the global batch."""
        if not self.active:
            return model.loss(batch)
        part, rows = shard_rows(batch, self.data_rank, self.data_world)
        with use_context_parallel(self.cp) if self.cp is not None else contextlib.nullcontext():
            loss, m = self.wrapped(part) if self.wrapped is not None else model.loss(part)
        n = float(m.get("tokens", rows)) if rows else 0.0  # under cp: the tokens of this rank's positions
        metrics, total = all_reduce_metrics(m, n, return_total=True, group=self.group)
        return loss * (n * self.reduce_world / max(total, 1e-12)), metrics

    # -- collectives the loop calls --------------------------------------------------------------
    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a picklable object)."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            barrier()

    def agree_max(self, value: float) -> float:
        """The largest ``value`` over ranks (elapsed time: every rank sees the same clock)."""
        if not self.active:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t)

    def seed_step(self, seed: int, step: int) -> None:
        """Seed this rank's generators from (seed, step, rank): dropout differs across ranks, resumes exactly."""
        if self.active:
            torch.manual_seed(((int(seed) * 1_000_003 + int(step)) * 4099 + self.rank) % 2**63)

    def on_main(self, fn: Callable[[], Any], *, share: bool = False, everywhere: bool = False) -> Any:
        """Run ``fn`` on rank 0 between two barriers; its error is raised on every rank.

        ``share``: every rank returns rank 0's result (else the others get None). ``everywhere``:
        every rank runs ``fn`` (a collective inside it, such as an FSDP forward), rank 0's result wins.
        """
        if not self.active:
            return fn()
        barrier()
        out, status = None, ("ok",)
        if self.is_main or everywhere:
            try:
                out = fn()
            except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - shared, then re-raised on rank 0
                if not self.is_main:
                    raise
                kind = "value" if isinstance(e, (ValueError, TypeError)) else "os" if isinstance(e, OSError) else "run"
                status = ("error", kind, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
                self.broadcast((status, None))
                raise
        status, shared = self.broadcast((status, out if share else None))
        if status[0] == "error":
            cls = {"value": _MainValueError, "os": _MainOSError}.get(status[1], _MainRuntimeError)
            raise cls(f"{status[2]} (reported by rank 0)")
        return out if self.is_main else shared


# -- the process group -----------------------------------------------------------------------------
def setup(device: str | torch.device | None = "cpu", *, timeout: Optional[float] = None) -> DistContext:
    """Open the process group torchrun's environment describes (gloo on CPU, NCCL on CUDA); returns
    the context. Without torchrun's variables: the one-process context. Idempotent."""
    if dist.is_available() and dist.is_initialized():
        return _context_of_group()
    env = torchrun_env()
    if env is None or env["WORLD_SIZE"] == 1 and env["LOCAL_WORLD_SIZE"] == 1:
        return DistContext()
    kind = torch.device(device or "cpu").type
    if kind == "cuda":
        if not torch.cuda.is_available() or env["LOCAL_RANK"] >= torch.cuda.device_count():
            raise DistributedError(f"local rank {env['LOCAL_RANK']} needs cuda:{env['LOCAL_RANK']}; this machine has "
                                   f"{torch.cuda.device_count()} CUDA device(s): run at most that many processes per "
                                   "node, or device='cpu'")
        torch.cuda.set_device(env["LOCAL_RANK"])
    else:
        check_nproc(env["LOCAL_WORLD_SIZE"], "cpu")
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed; install a torch with it to use torchrun")
    backend = "nccl" if kind == "cuda" else "gloo"
    kw = {"timeout": datetime.timedelta(seconds=timeout)} if timeout else {}
    dist.init_process_group(backend, **kw)
    ctx = _context_of_group()
    _STATE["ctx"] = ctx
    return ctx


_STATE: dict[str, DistContext] = {}


def _context_of_group() -> DistContext:
    ctx = _STATE.get("ctx")
    if ctx is not None and ctx.world == dist.get_world_size():
        return ctx
    env = torchrun_env() or {}
    ctx = DistContext(rank=dist.get_rank(), world=dist.get_world_size(),
                      local_rank=env.get("LOCAL_RANK", dist.get_rank()),
                      local_world=env.get("LOCAL_WORLD_SIZE", dist.get_world_size()), backend=dist.get_backend())
    _STATE["ctx"] = ctx
    return ctx


def current(device: str | torch.device | None = "cpu", *, fsdp: bool = False) -> DistContext:
    """The context of this process: the open process group, else :func:`setup` from torchrun's
    environment, else one process; ``fsdp``: shard the model with FSDP2 (else DDP)."""
    ctx = setup(device)
    if fsdp and not ctx.active:
        raise DistributedError("FSDP shards a model across processes, and this is one; run it on 2 or more: "
                               "attnkit train --nproc N --fsdp ..., or torchrun --standalone --nproc-per-node N "
                               "-m attnkit train --fsdp ...")
    ctx.fsdp, ctx.wrapped = bool(fsdp), None
    return ctx


def _need_group() -> None:
    if not (dist.is_available() and dist.is_initialized()):
        raise DistributedError("torch.distributed's process group was never initialised; call "
                               f"attnkit.train.distributed.setup() in a job started with {_LAUNCH}")


def is_main() -> bool:
    """Rank 0, or no process group (a one-process run)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _collective_device() -> torch.device:
    """Where a tensor for a collective lives: this rank's CUDA device under NCCL, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (a clear error, not a hang, without a process group)."""
    _need_group()
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_reduce_metrics(metrics: dict[str, Any], weight: float, *, return_total: bool = False,
                       group: Any = None) -> Any:
    """Weighted means over the ranks of ``group`` (None: all) of the numeric ``metrics`` (weight: this
    rank's targets), one all-reduce; ``tokens`` is their sum. ``return_total``: also the total weight."""
    _need_group()
    keys = sorted(k for k, v in metrics.items() if k != "tokens" and isinstance(v, (int, float))
                  and not isinstance(v, bool))
    t = torch.tensor([weight] + [weight * float(metrics[k]) for k in keys], dtype=torch.float64,
                     device=_collective_device())
    dist.all_reduce(t, group=group)
    vals = t.tolist()
    total = vals[0]
    out = dict(metrics)
    out.update({k: v / total if total > 0 else float(metrics[k]) for k, v in zip(keys, vals[1:])})
    if "tokens" in metrics:
        out["tokens"] = total
    return (out, total) if return_total else out


# -- the launcher ----------------------------------------------------------------------------------
def launch(nproc: int, argv: Sequence[str], *, device: str | torch.device | None = "cpu",
           run_dir: str | Path | None = None, resume_hint: Optional[str] = None) -> int:
    """Start torchrun's elastic agent (``torch.distributed.launcher.api.elastic_launch``, a local
    c10d rendezvous as ``torchrun --standalone``) running ``python ARGV...`` on ``nproc`` processes.

    Returns 0 when every rank succeeded, 2 when every failed rank exited 2 (a user error each rank
    printed); any other failure raises :class:`RankFailed` naming the first failed rank, how it ended
    and the last checkpoint of ``run_dir`` (``resume_hint``: the command that continues it).
    """
    check_nproc(nproc, device)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"attnkit-{os.getpid()}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2)
    try:
        elastic_launch(config, entrypoint=sys.executable)(*argv)
    except ChildFailedError as e:
        codes = [f.exitcode for f in e.failures.values()]
        if codes and all(c == 2 for c in codes):
            return 2
        raise RankFailed(describe_failure(e, run_dir, resume_hint)) from None
    return 0


def describe_failure(error: Any, run_dir: str | Path | None, resume_hint: Optional[str] = None) -> str:
    """One line: which rank failed first and how, and what is left of the run (``error``: ChildFailedError)."""
    # the root cause: a rank killed by a signal; then one that exited with an error (it may have failed in a
    # collective because another died); last a rank the agent itself stopped (SIGTERM) once one had failed
    def cause(kv: tuple[int, Any]) -> tuple[int, float, int]:
        code = kv[1].exitcode
        return (2 if code == -signal.SIGTERM else 0 if code < 0 else 1), kv[1].timestamp, kv[0]

    first_rank, first = min(error.failures.items(), key=cause)
    code = first.exitcode
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with status {code}"
        msg = first.message if isinstance(first.message, str) else (first.message or {}).get("message", "")
        if msg and not msg.startswith("To enable traceback"):
            how += f" ({msg.strip().splitlines()[-1]})"
    line = f"rank {first_rank} (pid {first.pid}) {how}; the job was stopped"
    if run_dir is None:
        return line
    record = Path(run_dir) / "last.json"
    try:
        step = json.loads(record.read_text()).get("step")
    except (OSError, ValueError, AttributeError):
        return line + f"; {run_dir} holds no checkpoint yet (nothing to resume: start the run again)"
    hint = resume_hint or f"attnkit train --resume {run_dir}"
    return line + f"; the last checkpoint {record} (step {step}) is intact: continue with `{hint}`"
