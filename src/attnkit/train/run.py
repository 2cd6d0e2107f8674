"""Run directories: build a task + model from one, and continue training it.

``load_run(run_dir)`` reads ``best.json`` (or ``last.json``) and its
safetensors, rebuilds the task with :func:`attnkit.data.get_task` and the
model with :func:`attnkit.models.build_model`, and loads the weights. The
vocabularies saved with the checkpoint win over the rebuilt ones, so a run
keeps working if a data package changes.

Nothing in a run directory is trusted: the task options, vocabularies and model config are
bounded by :func:`attnkit.train.checkpoint.load_checkpoint`; the model is first built on the
meta device (no memory) and its tensors' keys, shapes and dtypes are held against the file's
before the real model is built; each failure is one :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Mapping

import torch

from ..data import get_task
from ..data.vocab import Vocab
from ..models import build_model
from .checkpoint import CheckpointError, check_model_tensors, checkpoint_exists, load_checkpoint, split_prefix
from .loop import train

__all__ = ["load_run", "resume_run", "default_run_dir", "resolve_run_dir", "task_from_meta", "model_from_meta"]

#: (vocabulary side, the config field that sizes its embedding)
_VOCAB_FIELDS = (("src_vocab", "src_vocab_size"), ("tgt_vocab", "tgt_vocab_size"), ("vocab", "vocab_size"))


def default_run_dir(task: str, tag: str | None = None, *, root: str | Path = "runs") -> Path:
    """``runs/numbers-bahdanau-20261122-053000`` (a new, unused name)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / "-".join(x for x in (task, tag, stamp) if x)
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def resolve_run_dir(path: str | Path) -> Path:
    """The run directory ``path`` names: itself (a directory, or a symlink to one), or, for a pointer
    file (``runs/demo-latest`` where links cannot be made), the sibling directory named on its one line.

    ``ValueError`` when a pointer file names no directory beside it.
    """
    p = Path(path)
    if not p.is_file() or p.stat().st_size > 4096:
        return p
    name = p.read_text(encoding="utf-8", errors="replace").strip()
    target = p.parent / name
    if not name or "/" in name or "\\" in name or name in (".", "..") or not target.is_dir():
        raise ValueError(f"{p} is a file, not a run directory (nor a pointer naming a run directory beside it); "
                         "give the directory that attnkit train or demo wrote")
    return target


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def task_from_meta(meta: dict[str, Any], *, source: str = "the checkpoint") -> Any:
    """The task a checkpoint was trained on, with the vocabularies saved beside it."""
    info = meta.get("task")
    if not isinstance(info, dict) or "name" not in info:
        raise CheckpointError(f"{source}: it does not say which task it was trained on ('task' is missing)")
    opts = dict(info.get("options", {}))
    try:
        task = get_task(info["name"], **opts)
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{source}: its task cannot be rebuilt ({_first_line(e)})") from None
    for side, obj in meta.get("vocab", {}).items():
        try:
            setattr(task, side, Vocab.from_json(obj))
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{source}: vocab.{side} is not a vocabulary ({_first_line(e)})") from None
    return task


def model_from_meta(meta: dict[str, Any], tensors: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """The model of ``meta["config"]``, built only once its tensors are known to fit ``tensors``."""
    source = getattr(tensors, "source", "the checkpoint")
    cfg = meta["config"]
    for side, field in _VOCAB_FIELDS:
        toks = meta.get("vocab", {}).get(side, {}).get("tokens")
        size = cfg.get(field)
        if toks is not None and isinstance(size, int) and len(toks) > size:
            raise CheckpointError(f"{source}: vocab.{side} has {len(toks)} tokens but config.{field} is {size}; "
                                  "its ids would index past the embedding")
    try:
        with torch.device("meta"):  # shapes only, no memory: a config cannot allocate before it is checked
            probe = build_model(dict(cfg))
    except Exception:  # noqa: BLE001 - a model that cannot be built on meta is checked after the real build
        probe = None
    if probe is not None:
        check_model_tensors(probe, tensors)
    try:
        model = build_model(dict(cfg))
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{source}: its model config cannot be built ({_first_line(e)})") from None
    if probe is None:
        check_model_tensors(model, tensors)
    return model


def load_run(run_dir: str | Path, *, which: str = "best",
             device: str | torch.device = "cpu") -> tuple[Any, torch.nn.Module, dict[str, Any]]:
    """(task, model in eval mode, checkpoint meta) of a run directory."""
    run_dir = resolve_run_dir(run_dir)
    if which == "best" and not checkpoint_exists(run_dir, "best") and checkpoint_exists(run_dir, "last"):
        which = "last"
    tensors, meta = load_checkpoint(run_dir, which)
    task = task_from_meta(meta, source=tensors.source)
    model = model_from_meta(meta, tensors)
    model.load_state_dict(split_prefix(tensors, "model"))
    model.to(device).eval()
    return task, model, meta


def resume_run(run_dir: str | Path, **overrides: Any) -> dict[str, Any]:
    """Continue ``run_dir`` from its last checkpoint (``steps=`` extends the budget)."""
    run_dir = resolve_run_dir(run_dir)
    tensors, meta = load_checkpoint(run_dir, "last")
    state = meta.get("train", {}).get("state", {})
    if "seed" not in state or not isinstance(meta["train"].get("optimizer"), dict):
        raise CheckpointError(f"{tensors.source}: it holds no training state (train.state.seed, train.optimizer); "
                              "a 'best' record cannot be resumed")
    task = task_from_meta(meta, source=tensors.source)
    model = model_from_meta(meta, tensors)
    if checkpoint_exists(run_dir, "best"):  # the end of the run loads its weights into this model
        check_model_tensors(model, load_checkpoint(run_dir, "best")[0])
    return train(task, model, out_dir=run_dir, resume=True, seed=state["seed"], **overrides)
