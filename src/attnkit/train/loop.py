"""The training loop: any task, any registered model, checkpoints that resume exactly.

``train(task, model, steps=..., out_dir=...)`` runs Adam with warm-up and
cosine decay, clips gradients, validates every ``eval_every`` steps, keeps
the best checkpoint by ``task.primary_metric`` and the last one, and at the
end scores the best weights on the test split. It only calls
``task.batches(split, batch_size, generator=...)``, ``model.loss(batch)``
and ``task.evaluate(model, split, ...)``, so it does not care what a batch holds.

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

Exact resume: the data order of epoch e comes from a generator seeded with
(seed, e), the position inside the epoch is saved, and so are the model,
the Adam moments and the torch RNG state. Training N steps, stopping, and
resuming to 2N gives the same weights as 2N steps in one go.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import torch

from ..presets import preset
from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
    split_prefix,
    write_atomic,
)
from .progress import Progress

__all__ = ["train", "DEFAULTS", "lr_at", "make_optimizer", "resolve_device", "epoch_generator"]

#: defaults of every option; the (task, model) preset of attnkit.presets and the caller's arguments override them
DEFAULTS: dict[str, Any] = {
    "steps": 2000,
    "minutes": None,
    "batch_size": 64,
    "lr": 2e-3,
    "warmup": 100,
    "min_lr_ratio": 0.05,
    "weight_decay": 0.0,
    "clip": 1.0,
    "eval_every": 500,
    "eval_examples": 500,
    "stop_at": None,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"cpu"``/``"cuda"``/``"cuda:1"``; asking for CUDA without one is a clear error."""
    dev = torch.device(device or "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available here; use --device cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    return dev


def lr_at(step: int, *, lr: float, warmup: int, steps: Optional[int], min_lr_ratio: float,
          elapsed: Optional[float] = None) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_lr_ratio * lr`` at ``steps``.

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
    torch has one for the parameters' device and dtype, and torch's default otherwise.
    In baby GPT's training step on 2 CPU threads it is what makes attnkit's step faster
    than nanoGPT's (benchmarks/bench_gpt.py); nanoGPT turns it on for CUDA only.
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
    cfg = dict(getattr(model, "config", {}))
    return {
        "task": task.name,
        "model": cfg.get("model", type(model).__name__),
        "attention": cfg.get("attention"),
        "decoder": cfg.get("decoder"),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def checkpoint_meta(task: Any, model: Any, **extra: Any) -> dict[str, Any]:
    meta = {"task": task.describe(), "config": dict(model.config)}
    vocab = {}
    for side in ("src_vocab", "tgt_vocab", "vocab"):
        v = getattr(task, side, None)
        if v is not None and hasattr(v, "to_json"):
            vocab[side] = v.to_json()
    meta["vocab"] = vocab
    meta.update(extra)
    return meta


def _rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    out = {"rng/torch": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng/cuda"] = torch.cuda.get_rng_state(device)
    return out


def _set_rng(tensors: dict[str, torch.Tensor], device: torch.device) -> None:
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"])
    if device.type == "cuda" and "rng/cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng/cuda"], device)


def train(
    task: Any,
    model: torch.nn.Module,
    *,
    steps: Optional[int] = None,
    minutes: Optional[float] = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    out_dir: str | Path | None = None,
    resume: bool = False,
    batch_size: Optional[int] = None,
    lr: Optional[float] = None,
    warmup: Optional[int] = None,
    eval_every: Optional[int] = None,
    eval_examples: Optional[int] = None,
    stop_at: Optional[float] = None,
    final_eval: bool = True,
    progress: Optional[bool] = None,
    callback: Optional[Callable[[int, dict[str, float]], None]] = None,
) -> dict[str, Any]:
    """Train ``model`` on ``task``; returns the final metrics (test split of the best weights).

    ``steps`` and/or ``minutes`` bound the run (whichever comes first).
    ``out_dir`` enables checkpoints (``last`` and ``best``) and a
    ``history.jsonl``; ``resume=True`` continues from ``out_dir/last.json``
    with the options saved there (pass ``steps`` to extend the run).
    ``stop_at`` ends training once the validation metric reaches it.
    ``callback(step, metrics)`` runs after every step (tests use it to interrupt).
    """
    dev = resolve_device(device)
    model.to(dev)
    out = Path(out_dir) if out_dir is not None else None
    given = dict(steps=steps, minutes=minutes, batch_size=batch_size, lr=lr, warmup=warmup, eval_every=eval_every, eval_examples=eval_examples, stop_at=stop_at)
    opts = {**DEFAULTS, **preset(task.name, getattr(model, "config", {}).get("model", "")).train}
    if minutes is not None and steps is None:
        opts["steps"] = None
    state = {"step": 0, "epoch": 0, "offset": 0, "seconds": 0.0, "train_seconds": 0.0, "train_tokens": 0, "best": None, "best_step": None, "seed": int(seed)}
    opt_rest = None
    tensors: dict[str, torch.Tensor] = {}
    if resume:
        if out is None:
            raise ValueError("resume=True needs out_dir, the run directory to continue")
        tensors, meta = load_checkpoint(out, "last")
        if meta["config"] != dict(model.config):
            raise CheckpointError(f"{out}/last.json was saved from another model config; rebuild it with load_run({str(out)!r})")
        opts.update(meta["train"]["options"])
        state.update(meta["train"]["state"])
        opt_rest = meta["train"]["optimizer"]
    opts.update({k: v for k, v in given.items() if v is not None})
    if opts["steps"] is None and opts["minutes"] is None:
        raise ValueError("give a budget: steps=N or minutes=M")
    for k in ("steps", "batch_size", "eval_every", "eval_examples"):
        if opts[k] is not None and (isinstance(opts[k], bool) or not isinstance(opts[k], int) or opts[k] < 1):
            raise ValueError(f"{k} must be a positive int, got {opts[k]!r}")
    if opts["minutes"] is not None and not opts["minutes"] > 0:
        raise ValueError(f"minutes must be > 0, got {opts['minutes']!r}")
    if opts["lr"] is None or not opts["lr"] > 0:
        raise ValueError(f"lr must be > 0, got {opts['lr']!r}")

    seed = state["seed"]
    if not resume:
        torch.manual_seed(seed)
    optimizer = make_optimizer(model.parameters(), lr=opts["lr"], weight_decay=opts["weight_decay"])
    fused = [g.get("fused") for g in optimizer.param_groups]
    if resume:
        model.load_state_dict({k: v.to(dev) for k, v in split_prefix(tensors, "model").items()})
        optimizer_from_tensors(optimizer, {k: v.to(dev) for k, v in tensors.items() if k.startswith("optim/")}, opt_rest)
        for g, f in zip(optimizer.param_groups, fused):  # a run saved before fused AdamW resumes on the fused kernel
            g["fused"] = f
        _set_rng(tensors, dev)
    params = [p for g in optimizer.param_groups for p in g["params"]]  # what is updated is clipped; no module walk per step
    higher = getattr(task, "higher_is_better", True)
    metric = getattr(task, "primary_metric", "exact_match")
    summary = _summary(task, model)
    bar = Progress(opts["steps"], minutes=opts["minutes"], enabled=progress)
    history = (out / "history.jsonl") if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    def log_event(ev: dict[str, Any]) -> None:
        if history is not None:
            with open(history, "a") as f:
                f.write(json.dumps(ev) + "\n")

    def save(name: str, metrics: dict[str, Any]) -> None:
        if out is None:
            return
        tens = {f"model/{k}": v for k, v in model.state_dict().items()}
        rest = None
        if name == "last":
            ot, rest = optimizer_to_tensors(optimizer)
            tens.update(ot)
            tens.update(_rng_tensors(dev))
        meta = checkpoint_meta(
            task, model, step=state["step"], metrics=metrics, summary=summary,
            train={"options": opts, "state": dict(state), "optimizer": rest},
        )
        save_checkpoint(out, name, tens, meta)

    best_weights: dict[str, torch.Tensor] = {}

    def validate() -> dict[str, Any]:
        m = task.evaluate(model, "valid", max_examples=opts["eval_examples"])
        m = {k: v for k, v in m.items() if isinstance(v, (int, float))}
        val = m.get(metric)
        improved = val is not None and (
            _better(val, state["best"], higher) or _no_worse(m, state.get("best_metrics"), metric))
        if improved:
            state["best"], state["best_step"] = val, state["step"]
            state["best_metrics"] = {k: m[k] for k in (metric, "token_error_rate") if k in m}
        log_event({"event": "valid", "step": state["step"], **m})
        bar.log(f"step {state['step']}: valid {metric} {val:.4f}" + (" (best)" if improved else ""))
        if improved:
            best_weights.clear()
            best_weights.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            save("best", m)
        return m

    model.train()
    t_start = time.perf_counter() - state["seconds"]
    start_step = state["step"]
    stream = _batch_stream(task, opts["batch_size"], seed, state["epoch"], state["offset"])
    last_valid: dict[str, Any] = {}
    phase = "idle"
    rng_snapshot = torch.get_rng_state()
    try:
        while opts["steps"] is None or state["step"] < opts["steps"]:
            if opts["minutes"] is not None and time.perf_counter() - t_start >= opts["minutes"] * 60:
                break
            phase, rng_snapshot = "forward", torch.get_rng_state()
            t_step = time.perf_counter()
            epoch, offset, batch = next(stream)
            batch = batch.to(dev) if hasattr(batch, "to") else batch
            for g in optimizer.param_groups:
                g["lr"] = lr_at(state["step"], lr=opts["lr"], warmup=opts["warmup"], steps=opts["steps"], min_lr_ratio=opts["min_lr_ratio"],
                                elapsed=(time.perf_counter() - t_start) / (opts["minutes"] * 60) if opts["minutes"] else None)
            loss, m = model.loss(batch)
            value = m["loss"] if isinstance(m.get("loss"), float) else float(loss)  # the models report it already
            if not math.isfinite(value):
                raise FloatingPointError(f"the loss became {value} at step {state['step']}; lower --lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if opts["clip"]:
                torch.nn.utils.clip_grad_norm_(params, opts["clip"])
            phase = "update"
            optimizer.step()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)  # the step's kernels belong to its time
            now = time.perf_counter()
            state.update(step=state["step"] + 1, epoch=epoch, offset=offset, seconds=now - t_start,
                         train_seconds=state["train_seconds"] + (now - t_step),
                         train_tokens=state["train_tokens"] + _count_tokens(batch, m))
            phase = "idle"
            bar.update(state["step"], m, start_step=start_step)
            if callback is not None:
                callback(state["step"], m)
            if state["step"] % opts["eval_every"] == 0:
                last_valid = validate()
                save("last", last_valid)
                model.train()
                if opts["stop_at"] is not None and last_valid.get(metric) is not None and not _better(opts["stop_at"], last_valid[metric], higher):
                    break
    except KeyboardInterrupt:
        bar.close()
        if phase != "update" and out is not None:
            if phase == "forward":
                torch.set_rng_state(rng_snapshot)  # the interrupted step never happened
            state["seconds"] = time.perf_counter() - t_start
            save("last", last_valid)
        raise
    bar.close()
    state["seconds"] = time.perf_counter() - t_start
    if state["step"] % opts["eval_every"] != 0 or state["step"] == start_step:
        if state["step"] > start_step or state["best"] is None:
            last_valid = validate()
        save("last", last_valid)
    result: dict[str, Any] = {**summary, "steps": state["step"], "seconds": round(state["seconds"], 2), "run_dir": str(out) if out else None}
    result.update(_throughput(state["train_tokens"], state["train_seconds"]))
    result[f"valid_{metric}"] = state["best"]
    if final_eval:
        if best_weights:
            model.load_state_dict(best_weights)
        elif out is not None and state["best_step"] is not None:
            best, _ = load_checkpoint(out, "best")
            model.load_state_dict({k: v.to(dev) for k, v in split_prefix(best, "model").items()})
        test = task.evaluate(model, "test")
        result.update({k: v for k, v in test.items() if isinstance(v, (int, float))})
    if out is not None:
        write_atomic(out / "metrics.json", (json.dumps(result, indent=1) + "\n").encode())
        log_event({"event": "done", **result})
    return result
