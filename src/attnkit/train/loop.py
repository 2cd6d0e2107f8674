"""The training loop: any task, any registered model, checkpoints that resume exactly.

``train(task, model, steps=..., out_dir=...)`` runs AdamW with warm-up and
cosine decay, clips gradients, validates every ``eval_every`` steps, keeps
the best checkpoint by ``task.primary_metric`` and the last one, and at the
end scores the best weights on the test split. It only calls
``task.batches(split, batch_size, generator=...)``, ``model.loss(batch)``
and ``task.evaluate(model, split, ...)``, so it does not care what a batch holds.

The loop is five named steps::

    opts  = resolve_options(task, model, ...)   # TRAIN_DEFAULTS < presets < saved run < arguments
    restore(model, optimizer, checkpoint)       # resume: weights, Adam moments, RNG state
    while budget left:  train_step(run, batches)  (+ validate(run) every eval_every steps)
    finish(run)                                 # last validation, test split of the best weights

Throughput: the result reports ``tokens_per_second = train_tokens / train_seconds``.
``train_tokens`` sums ``batch.num_tokens`` over the batches actually trained on
(the model's ``metrics["tokens"]`` when a batch has no ``num_tokens``): for a
sequence-to-sequence :class:`~attnkit.data.base.Batch` the non-pad target
tokens, EOS included; for a :class:`~attnkit.data.shakespeare.CharBatch` every
character of ``x`` (each one a target of next-character LM; for masked-LM and
genre classification the characters the encoder reads, of which ~15 % resp.
none are scored). ``train_seconds`` is the wall time of the training steps
(batch, forward, backward, update), without validation and checkpointing;
``seconds`` is the whole run.

Exact resume: epoch e is ordered by a generator seeded with (seed, e); the position in the
epoch, the model (buffers too: REINFORCE baseline, batch-norm statistics), the Adam moments
and the RNG state are saved. A step cut short by Ctrl-C before its update never happened
(its RNG draws and buffer updates are rewound). The schedule belongs to the run: it decays
over ``decay_steps`` (default: the first step budget), saved with the run, so ``steps=N,
decay_steps=2N`` resumed to ``steps=2N`` gives the weights of ``steps=2N`` in one go, and
``steps=N`` resumed to 2N those of ``steps=2N, decay_steps=N``. The run directory is locked
while a run lasts (:mod:`attnkit.train.lock`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

import torch

from ..presets import train_options
from .checkpoint import (
    CheckpointError,
    check_state,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
    split_prefix,
    write_atomic,
)
from .context_parallel import enable_context_parallel
from .distributed import DistContext, current
from .lock import claim_run_dir
from .meta import checkpoint_meta, model_config, model_name
from .progress import Progress
from .snapshot import StepSnapshot, rng_tensors, set_rng

__all__ = [
    "train", "TrainOptions", "RunState", "resolve_options", "restore", "train_step", "validate", "finish",
    "lr_at", "make_optimizer", "resolve_device", "epoch_generator", "LossNotFinite",
]


# -- options and state ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainOptions:
    """Every training option; :func:`resolve_options` fills them (``attnkit.presets.TRAIN_DEFAULTS``)."""

    steps: Optional[int]
    minutes: Optional[float]
    batch_size: int
    lr: float
    warmup: int
    min_lr_ratio: float
    weight_decay: float
    clip: float
    eval_every: int
    eval_examples: int
    stop_at: Optional[float]
    decay_steps: Optional[int] = None  # the cosine's horizon; fixed when the run starts

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunState:
    """Where a run is: what a checkpoint saves so that resuming continues exactly."""

    seed: int
    step: int = 0
    epoch: int = 0
    offset: int = 0  # batches of ``epoch`` already trained on
    seconds: float = 0.0
    train_seconds: float = 0.0
    train_tokens: int = 0
    best: Optional[float] = None
    best_step: Optional[int] = None
    best_metrics: Optional[dict[str, float]] = None  # the best validation's metric and token error rate

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["best_metrics"] is None:
            del out["best_metrics"]
        return out

    @classmethod
    def from_json(cls, saved: Mapping[str, Any]) -> "RunState":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})


def _positive_int(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class LossNotFinite(FloatingPointError, ValueError):
    """The training loss became NaN or infinite (a ValueError too, so the CLI shows one line)."""


def resolve_options(task_name: str, model: str, *, saved: Optional[Mapping[str, Any]] = None,
                    **given: Any) -> TrainOptions:
    """The options of one run: TRAIN_DEFAULTS < ``presets.preset(task, model).train`` < ``saved``
    (the options of the run being resumed) < ``given`` (None = not given).

    ``minutes`` given without ``steps`` drops the preset's step budget: the clock alone bounds the run.
    ``decay_steps`` (the schedule's horizon) defaults to the step budget of a new run and to the
    saved horizon of a resumed one (a run saved before it was recorded: its saved step budget).
    """
    given = dict(given)
    decay = given.pop("decay_steps", None)
    opts = train_options(task_name, model, **given)  # unknown names are a TypeError here
    chosen = {k: v for k, v in given.items() if v is not None}
    if "minutes" in chosen and "steps" not in chosen:
        opts["steps"] = None
    horizon = opts["steps"]
    if saved:
        horizon = saved.get("decay_steps", saved.get("steps"))
        opts.update({**saved, **chosen})
    opts["decay_steps"] = decay if decay is not None else horizon
    if opts["steps"] is None and opts["minutes"] is None:
        raise ValueError("give a budget: steps=N or minutes=M")
    for k in ("steps", "decay_steps", "batch_size", "eval_every", "eval_examples"):
        _positive_int(k, opts[k])
    if opts["minutes"] is not None and not opts["minutes"] > 0:
        raise ValueError(f"minutes must be > 0, got {opts['minutes']!r}")
    if opts["lr"] is None or not opts["lr"] > 0:
        raise ValueError(f"lr must be > 0, got {opts['lr']!r}")
    names = {f.name for f in dataclasses.fields(TrainOptions)}
    return TrainOptions(**{k: v for k, v in opts.items() if k in names})


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"cpu"``/``"cuda"``/``"cuda:1"``; asking for CUDA without one is a clear error."""
    try:
        dev = torch.device(device or "cpu")
    except RuntimeError:
        raise ValueError(f"device={device!r} is not a torch device; use device='cpu' or device='cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r}: no CUDA device is available here; use device='cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                         "use device='cuda:0'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={str(device)!r}: no Apple MPS device is available here; use device='cpu'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    return dev


def lr_at(step: int, *, lr: float, warmup: int, steps: Optional[int], min_lr_ratio: float,
          elapsed: Optional[float] = None) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_lr_ratio * lr`` at ``steps``
    (the horizon, a run's ``decay_steps``), and ``min_lr_ratio * lr`` after it.

    Without a step budget (``--minutes``) ``elapsed``, the fraction of the time budget spent, drives
    the same cosine; without either the rate stays at ``lr`` after warm-up.
    """
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    if steps:
        frac = min(1.0, (step - warmup) / max(1, steps - warmup))
    elif elapsed is not None:
        frac = min(1.0, max(0.0, elapsed))
    else:
        return lr
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def make_optimizer(params: Iterable[Any], *, lr: float, weight_decay: float = 0.0,
                   betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019, arXiv:1711.05101) over the trainable ``params``
    (tensors, or param-group dicts as torch takes them):
    ``m = β1 m + (1-β1) g``, ``v = β2 v + (1-β2) g²``, ``θ -= lr (m̂ / (sqrt(v̂) + ε) + λ θ)``.

    It uses torch's fused kernel (one pass over all parameters, on CPU as on CUDA) where
    torch has one for the parameters' device and dtype, and torch's default otherwise
    (benchmarks/bench_gpt.py measures the step against nanoGPT's).
    """
    params = list(params)
    if params and not isinstance(params[0], dict):
        params = [p for p in params if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, fused=True)
    except (RuntimeError, ValueError, TypeError):  # no fused kernel for this device / dtype
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that orders epoch ``epoch`` (a pure function of seed and epoch)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def _batch_stream(task: Any, batch_size: int, seed: int, epoch: int, offset: int) -> Iterator[tuple[int, int, Any]]:
    """(epoch, offset after this batch, batch) forever, starting at batch ``offset`` of ``epoch``."""
    while True:
        it = task.batches("train", batch_size, generator=epoch_generator(seed, epoch))
        it = itertools.islice(it, offset, None)
        n = offset
        got = False
        for batch in it:
            got = True
            n += 1
            yield epoch, n, batch
        if not got and offset == 0:
            raise ValueError(f"task {task.name!r} produced no training batches; check its train split")
        epoch, offset = epoch + 1, 0


def _count_tokens(batch: Any, metrics: dict[str, Any]) -> int:
    """Tokens of one trained batch: ``batch.num_tokens``, else the model's ``metrics["tokens"]``, else 0."""
    n = getattr(batch, "num_tokens", None)
    if n is None:
        n = metrics.get("tokens", 0)
    return int(n)


def _throughput(tokens: int, seconds: float) -> dict[str, Any]:
    """``tokens_per_second = train_tokens / train_seconds`` (None before any step or without token counts)."""
    tps = round(tokens / seconds, 1) if tokens > 0 and seconds > 0 else None
    return {"train_tokens": int(tokens), "train_seconds": round(seconds, 6), "tokens_per_second": tps}


def _better(a: float, b: Optional[float], higher: bool) -> bool:
    return b is None or (a > b if higher else a < b)


def _no_worse(m: dict[str, Any], best: Optional[dict[str, Any]], metric: str) -> bool:
    """A validation that ties the best on ``metric`` and on the token error rate (when both
    have one) replaces it: the later weights have trained longer on the same evidence (and
    under a decaying rate are the smoother ones), so a tie goes to them."""
    if best is None or m.get(metric) != best.get(metric):
        return False
    a, b = m.get("token_error_rate"), best.get("token_error_rate")
    return a is None or b is None or a <= b


def _summary(task: Any, model: Any) -> dict[str, Any]:
    cfg = model_config(model)
    return {
        "task": task.name,
        "model": model_name(model),
        "attention": cfg.get("attention"),
        "decoder": cfg.get("decoder"),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


# -- one run ----------------------------------------------------------------------------------------
@dataclass
class _Run:
    """What the steps of one run share: the objects it trains and where it writes."""

    task: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    opts: TrainOptions
    state: RunState
    device: torch.device
    out: Optional[Path]
    bar: Progress
    metric: str
    higher: bool
    summary: dict[str, Any]
    params: list[torch.Tensor] = field(default_factory=list)  # what is updated is clipped
    best_weights: dict[str, torch.Tensor] = field(default_factory=dict)
    last_valid: dict[str, Any] = field(default_factory=dict)
    t_start: float = 0.0
    phase: str = "idle"  # "forward" / "update" / "idle": what an interrupt cut short
    before_step: Optional[StepSnapshot] = None  # RNG and buffers as they were before the current step
    dist: DistContext = field(default_factory=DistContext)  # torchrun: rank 0 logs and writes (train.distributed)

    def log_event(self, event: dict[str, Any]) -> None:
        if self.out is not None and self.dist.is_main:
            with open(self.out / "history.jsonl", "a") as f:
                f.write(json.dumps(event) + "\n")

    def save(self, name: str, metrics: dict[str, Any], *, sync: bool = True, full: Any = None) -> None:
        """Checkpoint ``name`` ("best": the weights; "last": also the optimizer and RNG state).
        Under torchrun rank 0 writes between barriers (``sync=False``: alone, for an interrupt)."""
        if self.out is None:
            return
        if sync:  # FSDP: every rank joins the gather of the full state first (train.sharded)
            full = self.dist.full_state(self.model, self.optimizer, last=name == "last", out=self.out,
                                        step=self.state.step)
            return self.dist.on_main(lambda: self.save(name, metrics, sync=False, full=full))
        if not self.dist.is_main or (self.dist.fsdp and full is None):
            return  # FSDP: an interrupt cannot gather the shards; the last periodic checkpoint stands
        weights, optim = full if full is not None else (self.model.state_dict(), None)
        tensors = {f"model/{k}": v for k, v in weights.items()}
        rest = None
        if name == "last":
            optim, rest = optim or optimizer_to_tensors(self.optimizer)
            tensors.update(optim)
            tensors.update(rng_tensors(self.device))
        meta = checkpoint_meta(
            self.task, self.model, step=self.state.step, metrics=metrics, summary=self.summary,
            train={"options": self.opts.to_json(), "state": self.state.to_json(), "optimizer": rest},
        )
        save_checkpoint(self.out, name, tensors, meta)

    def budget_left(self) -> bool:
        if self.opts.steps is not None and self.state.step >= self.opts.steps:
            return False
        spent = self.dist.agree_max(time.perf_counter() - self.t_start) if self.opts.minutes else 0.0  # ranks agree
        return self.opts.minutes is None or spent < self.opts.minutes * 60

    def reached_target(self) -> bool:
        """``stop_at`` reached by the last validation."""
        val = self.last_valid.get(self.metric)
        return self.opts.stop_at is not None and val is not None and not _better(self.opts.stop_at, val, self.higher)


def _load_last(out: Optional[Path], model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if out is None:
        raise ValueError("resume=True needs out_dir, the run directory to continue")
    tensors, meta = load_checkpoint(out, "last")
    if meta["config"] != model_config(model):
        raise CheckpointError(f"{out}/last.json was saved from another model config; "
                              f"rebuild it with load_run({str(out)!r})")
    return tensors, meta


def restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor],
            optimizer_rest: Any, device: torch.device) -> None:
    """Load a ``last`` checkpoint's weights, Adam moments and RNG state into ``model`` / ``optimizer``.

    The optimizer keeps the kernel it was made with: a run saved by the multi-tensor AdamW
    resumes on the fused one.
    """
    check_state(model, optimizer, tensors, optimizer_rest)  # every key, shape and dtype, before any is used
    fused = [g.get("fused") for g in optimizer.param_groups]
    try:
        model.load_state_dict({k: v.to(device) for k, v in split_prefix(dict(tensors), "model").items()})
    except RuntimeError as e:  # torch: "Error(s) in loading state_dict ...:" then one line per problem
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        raise CheckpointError(f"the saved weights do not fit this model ({lines[min(1, len(lines) - 1)]}); the "
                              "model changed since the run was saved: start a new run") from None
    optim = {k: v.to(device) for k, v in tensors.items() if k.startswith("optim/")}
    optimizer_from_tensors(optimizer, optim, optimizer_rest)
    for g, f in zip(optimizer.param_groups, fused):
        g["fused"] = f
    set_rng(dict(tensors), device)


def train_step(run: _Run, batches: Iterator[tuple[int, int, Any]]) -> dict[str, Any]:
    """One optimizer step on the next batch; returns the model's metrics of it."""
    opts, state = run.opts, run.state
    run.phase = "forward"
    run.before_step.take()
    run.dist.seed_step(state.seed, state.step)  # torchrun: each rank's dropout from (seed, step, rank)
    t_step = time.perf_counter()
    epoch, offset, batch = next(batches)
    batch = batch.to(run.device) if hasattr(batch, "to") else batch
    elapsed = run.dist.agree_max(time.perf_counter() - run.t_start) / (opts.minutes * 60) if opts.minutes else None
    rate = lr_at(state.step, lr=opts.lr, warmup=opts.warmup, steps=opts.decay_steps, min_lr_ratio=opts.min_lr_ratio,
                 elapsed=elapsed)
    for g in run.optimizer.param_groups:
        g["lr"] = rate
    loss, m = run.dist.loss(run.model, batch)  # torchrun: this rank's rows; the metrics of the global batch
    value = m["loss"] if isinstance(m.get("loss"), float) else float(loss)  # the models report it already
    if not math.isfinite(value):
        raise LossNotFinite(f"the loss became {value} at step {state.step}; lr={opts.lr:g} may be too high "
                            f"(try lr={opts.lr / 4:g}), or check the data")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if opts.clip:
        torch.nn.utils.clip_grad_norm_(run.params, opts.clip)
    run.phase = "update"
    run.optimizer.step()
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)  # the step's kernels belong to its time
    now = time.perf_counter()
    state.step += 1
    state.epoch, state.offset, state.seconds = epoch, offset, now - run.t_start
    state.train_seconds += now - t_step
    state.train_tokens += _count_tokens(batch, m)
    run.phase = "idle"
    run.log_event({"event": "train", "step": state.step, "loss": value, "lr": rate})  # attnkit plot draws these
    return m


def validate(run: _Run) -> dict[str, Any]:
    """Score the validation split; a new best updates the state, keeps the weights and saves ``best``."""
    state, metric = run.state, run.metric
    m = run.dist.on_main(lambda: run.task.evaluate(run.model, "valid", max_examples=run.opts.eval_examples),
                         share=True, everywhere=run.dist.fsdp)  # torchrun: rank 0's scores on every rank
    m = {k: v for k, v in m.items() if v is None or isinstance(v, (int, float))}  # None: could not be computed
    val = m.get(metric)
    improved = val is not None and (_better(val, state.best, run.higher) or _no_worse(m, state.best_metrics, metric))
    if improved:
        state.best, state.best_step = val, state.step
        state.best_metrics = {k: m[k] for k in (metric, "token_error_rate") if k in m}
    run.log_event({"event": "valid", "step": state.step, **m})
    shown = f"{val:.4f}" if val is not None else "missing"
    run.bar.log(f"step {state.step}: valid {metric} {shown}" + (" (best)" if improved else ""))
    if improved:
        run.best_weights = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
        run.save("best", m)
    return m


def _interrupted(run: _Run) -> None:
    """Ctrl-C: save ``last`` as of the last finished step (a step cut before its update never happened)."""
    run.bar.close()
    if run.phase != "update" and run.out is not None:
        if run.phase == "forward":
            run.before_step.restore()  # the RNG draws and buffer updates of the cut step are undone
        run.state.seconds = time.perf_counter() - run.t_start
        run.save("last", run.last_valid, sync=False)


def finish(run: _Run, start_step: int, *, final_eval: bool) -> dict[str, Any]:
    """Validate and save ``last`` unless the last step just did; score the best weights on the test split."""
    state, model = run.state, run.model
    run.bar.close()
    state.seconds = time.perf_counter() - run.t_start
    if state.step % run.opts.eval_every != 0 or state.step == start_step:
        if state.step > start_step or state.best is None:
            run.last_valid = validate(run)
        run.save("last", run.last_valid)
    result: dict[str, Any] = {**run.summary, "steps": state.step, "seconds": round(state.seconds, 2),
                              "run_dir": str(run.out) if run.out else None}
    result.update(_throughput(state.train_tokens, state.train_seconds))
    result[f"valid_{run.metric}"] = state.best
    if final_eval:
        if run.best_weights:
            model.load_state_dict(run.best_weights)
        elif run.out is not None and state.best_step is not None:
            best, _ = load_checkpoint(run.out, "best")
            run.dist.load_weights(model, {k: v.to(run.device) for k, v in split_prefix(best, "model").items()})
        test = run.dist.on_main(lambda: run.task.evaluate(model, "test"), share=True, everywhere=run.dist.fsdp)
        result.update({k: v for k, v in test.items() if v is None or isinstance(v, (int, float))})
    if run.out is not None and run.dist.is_main:
        write_atomic(run.out / "metrics.json", (json.dumps(result, indent=1) + "\n").encode())
        run.log_event({"event": "done", **result})
    return result


def train(
    task: Any,
    model: torch.nn.Module,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    out_dir: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    fsdp: bool = False,
    context_parallel: int = 1,
    final_eval: bool = True,
    progress: Optional[bool] = None,
    callback: Optional[Callable[[int, dict[str, float]], None]] = None,
    **options: Any,
) -> dict[str, Any]:
    """Train ``model`` on ``task``; returns the final metrics (test split of the best weights).

    ``options`` are the fields of :class:`TrainOptions` (``steps``, ``minutes``, ``batch_size``,
    ``lr``, ``warmup``, ``min_lr_ratio``, ``weight_decay``, ``clip``, ``eval_every``,
    ``eval_examples``, ``stop_at``, ``decay_steps``); those not given come from ``attnkit.presets``
    for (task, model). ``steps`` and/or ``minutes`` bound the run (whichever comes first);
    ``decay_steps`` is the horizon of the cosine (default: ``steps``).
    ``out_dir`` enables checkpoints (``last`` and ``best``) and a ``history.jsonl`` (one ``train``
    event per step with its loss and learning rate, one ``valid`` event per validation); it is locked
    while the run lasts, and a directory that already holds a run is refused unless ``resume``
    or ``force`` (which deletes that run). ``resume=True`` continues from ``out_dir/last.json``
    with the options saved there (options given win; ``steps`` extends the run on its saved
    schedule). ``stop_at`` ends training once the validation metric reaches it.
    ``callback(step, metrics)`` runs after every step (tests use it to interrupt). Under torchrun: DDP
    (``fsdp``: FSDP2), ``batch_size`` the global batch (:mod:`attnkit.train.distributed`);
    ``context_parallel=C``: groups of C ranks share every sequence (:mod:`attnkit.train.context_parallel`).
    """
    dist = current(device, fsdp=fsdp)  # torchrun: the process group (train.distributed); else one process
    enable_context_parallel(dist, context_parallel, model=model, task=task)  # checks, then the ring's groups
    dev = dist.place(resolve_device(device))
    out = dist.broadcast(Path(out_dir) if out_dir is not None else None)  # rank 0 names the run directory
    if resume and out is None:
        raise ValueError("resume=True needs out_dir, the run directory to continue")
    lock = dist.on_main(lambda: claim_run_dir(out, resume=resume, force=force)) if out is not None else None
    try:
        return _train_locked(task, model, seed=seed, dev=dev, out=out, resume=resume, final_eval=final_eval,
                             progress=progress if dist.is_main else False, callback=callback, options=options,
                             stale=lock.stale if lock is not None else None, dist=dist)
    finally:
        if lock is not None:
            lock.release()


def _train_locked(task: Any, model: torch.nn.Module, *, seed: int, dev: torch.device, out: Optional[Path],
                  resume: bool, final_eval: bool, progress: Optional[bool],
                  callback: Optional[Callable[[int, dict[str, float]], None]], options: dict[str, Any],
                  stale: Optional[dict[str, Any]], dist: DistContext) -> dict[str, Any]:
    model.to(dev)
    tensors, meta = _load_last(out, model) if resume else ({}, None)
    saved = meta["train"] if meta is not None else None
    opts = resolve_options(task.name, model_name(model), saved=saved["options"] if saved else None, **options)
    state = RunState.from_json(saved["state"]) if saved else RunState(seed=int(seed))
    dist.check_batch_size(opts.batch_size)
    if not resume:
        torch.manual_seed(state.seed)
    optimizer = make_optimizer(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    if saved:
        restore(model, optimizer, tensors, saved["optimizer"], dev)
    optimizer = dist.wrap(model, optimizer, lambda ps: make_optimizer(ps, lr=opts.lr, weight_decay=opts.weight_decay),
                          resume=(out, state.step) if saved else None)  # torchrun: DDP or FSDP2
    run = _Run(task=task, model=model, optimizer=optimizer, opts=opts, state=state, device=dev, out=out,
               bar=Progress(opts.steps, minutes=opts.minutes, enabled=progress),
               metric=getattr(task, "primary_metric", "exact_match"), higher=getattr(task, "higher_is_better", True),
               summary=_summary(task, model), params=[p for g in optimizer.param_groups for p in g["params"]],
               before_step=StepSnapshot(model, dev), dist=dist)
    if stale:  # the lock file named a holder that died without releasing it
        run.log_event({"event": "stale_lock", "holder": stale})

    model.train()
    run.t_start = time.perf_counter() - state.seconds
    start_step = state.step
    batches = _batch_stream(task, opts.batch_size, state.seed, state.epoch, state.offset)
    run.before_step.take()
    try:
        while run.budget_left():
            m = train_step(run, batches)
            run.bar.update(state.step, m, start_step=start_step)
            if callback is not None:
                callback(state.step, m)
            if state.step % opts.eval_every == 0:
                run.last_valid = validate(run)
                run.save("last", run.last_valid)
                model.train()
                if run.reached_target():
                    break
    except KeyboardInterrupt:
        _interrupted(run)
        raise
    return finish(run, start_step, final_eval=final_eval)
