"""Run directories: build a task + model from one, and continue training it.

``load_run(run_dir)`` reads ``best.json`` (or ``last.json``) and its
safetensors, rebuilds the task with :func:`attnkit.data.get_task` and the
model with :func:`attnkit.models.build_model`, and loads the weights. The
vocabularies saved with the checkpoint win over the rebuilt ones, so a run
keeps working if a data package changes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import torch

from ..data import get_task
from ..data.vocab import Vocab
from ..models import build_model
from .checkpoint import CheckpointError, checkpoint_exists, load_checkpoint, split_prefix
from .loop import train

__all__ = ["load_run", "resume_run", "default_run_dir", "task_from_meta"]


def default_run_dir(task: str, tag: str | None = None, *, root: str | Path = "runs") -> Path:
    """``runs/numbers-bahdanau-20261122-053000`` (a new, unused name)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / "-".join(x for x in (task, tag, stamp) if x)
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def task_from_meta(meta: dict[str, Any]) -> Any:
    """The task a checkpoint was trained on, with the vocabularies saved beside it."""
    info = meta.get("task")
    if not isinstance(info, dict) or "name" not in info:
        raise CheckpointError("the checkpoint does not say which task it was trained on ('task' is missing)")
    opts = dict(info.get("options", {}))
    task = get_task(info["name"], **opts)
    for side, obj in meta.get("vocab", {}).items():
        setattr(task, side, Vocab.from_json(obj))
    return task


def load_run(run_dir: str | Path, *, which: str = "best", device: str | torch.device = "cpu") -> tuple[Any, torch.nn.Module, dict[str, Any]]:
    """(task, model in eval mode, checkpoint meta) of a run directory."""
    run_dir = Path(run_dir)
    if which == "best" and not checkpoint_exists(run_dir, "best") and checkpoint_exists(run_dir, "last"):
        which = "last"
    tensors, meta = load_checkpoint(run_dir, which)
    task = task_from_meta(meta)
    model = build_model(dict(meta["config"]))
    try:
        model.load_state_dict(split_prefix(tensors, "model"))
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(f"{run_dir}/{which}.json: the weights do not fit the saved model config ({first[0] if first else e})") from None
    model.to(device).eval()
    return task, model, meta


def resume_run(run_dir: str | Path, **overrides: Any) -> dict[str, Any]:
    """Continue ``run_dir`` from its last checkpoint (``steps=`` extends the budget)."""
    tensors, meta = load_checkpoint(run_dir, "last")
    task = task_from_meta(meta)
    model = build_model(dict(meta["config"]))
    seed = meta["train"]["state"]["seed"]
    return train(task, model, out_dir=run_dir, resume=True, seed=seed, **overrides)
