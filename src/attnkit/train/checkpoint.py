"""Checkpoints: safetensors for tensors, JSON for everything else, committed atomically.

A checkpoint named ``last`` or ``best`` in a run directory is two files::

    last.json                          the commit record: format, step, config, vocabularies,
                                       metrics, training state, and the name + sha256 of ...
    last-00001200-3f9a1c2e.safetensors ... the tensors (model, optimizer moments, RNG states)

Saving writes the tensors to a fresh file (temporary name, fsync, rename),
then replaces the JSON the same way, then deletes the tensors the old JSON
pointed at. Whatever the crash (Ctrl-C, kill, disk full), the JSON names a
complete tensor file: the new one or the previous one. Loading reads only
JSON and safetensors (never pickle), checks the format and the sha256, and
turns every problem into a ValueError / FileNotFoundError that says what is
wrong with which file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["FORMAT", "save_checkpoint", "load_checkpoint", "write_atomic", "checkpoint_exists", "CheckpointError"]

FORMAT = "attnkit-checkpoint/1"
NAMES = ("last", "best")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, partial, tampered or from another format."""


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either untouched or complete.

    Writes ``.NAME.tmp-<8 random hex digits>`` beside ``path``, fsyncs it, renames it
    over ``path`` (os.replace is atomic on POSIX and Windows) and fsyncs the directory. On any error the
    temporary file is removed and an OSError naming the file is raised.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            raise OSError(e.errno, f"could not write {path} ({why}); the previous checkpoint is intact") from e
        raise
    # make the rename durable; directories cannot be opened or fsynced on every platform
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_checkpoint(run_dir: str | Path, name: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Commit ``tensors`` + ``meta`` as checkpoint ``name`` ("last" or "best") of ``run_dir``."""
    from safetensors.torch import save

    if name not in NAMES:
        raise ValueError(f"checkpoint name must be one of {', '.join(NAMES)}, got {name!r}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    step = int(meta.get("step", 0))
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = save(tensors)
    weights = f"{name}-{step:08d}-{secrets.token_hex(4)}.safetensors"
    write_atomic(run_dir / weights, data)
    record = {"format": FORMAT, **meta, "weights": weights, "sha256": _digest(data)}
    try:
        write_atomic(run_dir / f"{name}.json", (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    except BaseException:
        (run_dir / weights).unlink(missing_ok=True)
        raise
    for old in run_dir.glob(f"{name}-*.safetensors"):
        if old.name != weights:
            old.unlink(missing_ok=True)
    return run_dir / f"{name}.json"


def checkpoint_exists(run_dir: str | Path, name: str = "last") -> bool:
    return (Path(run_dir) / f"{name}.json").is_file()


def load_checkpoint(run_dir: str | Path, name: str = "best") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, meta) of checkpoint ``name``; clear errors for every way it can be broken."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(f"run directory {run_dir} does not exist; train one with `attnkit train TASK --out {run_dir}`")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is a file, not a run directory")
    rec_path = run_dir / f"{name}.json"
    if not rec_path.is_file():
        have = [n for n in NAMES if (run_dir / f"{n}.json").is_file()]
        hint = f"; it has: {', '.join(have)}" if have else "; it holds no checkpoint (was training interrupted before the first save?)"
        raise FileNotFoundError(f"{rec_path} is missing{hint}")
    try:
        meta = json.loads(rec_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{rec_path} is not valid JSON ({e}); the checkpoint is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{rec_path} is not an attnkit checkpoint (format {got!r}, expected {FORMAT!r})")
    for key in ("weights", "sha256", "config"):
        if key not in meta:
            raise CheckpointError(f"{rec_path} lacks {key!r}; the checkpoint is damaged")
    wpath = run_dir / str(meta["weights"])
    if Path(meta["weights"]).name != meta["weights"]:
        raise CheckpointError(f"{rec_path} names weights outside the run directory: {meta['weights']!r}")
    if not wpath.is_file():
        raise CheckpointError(f"{wpath} is missing; {rec_path.name} points at it, so the run directory is incomplete")
    data = wpath.read_bytes()
    if _digest(data) != meta["sha256"]:
        raise CheckpointError(
            f"{wpath} does not match the sha256 recorded in {rec_path.name} (truncated or modified); "
            "retrain, or resume from another copy of the run"
        )
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{wpath} is not a valid safetensors file ({e})") from None
    return tensors, meta


def split_prefix(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors under ``prefix/``, with the prefix removed."""
    p = prefix + "/"
    return {k[len(p) :]: v for k, v in tensors.items() if k.startswith(p)}


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """An optimizer's state as flat tensors + a JSON-able rest (param groups, scalar state)."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"optim/{idx}/{k}"] = v
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], rest: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for k, v in split_prefix(tensors, "optim").items():
        idx, name = k.split("/", 1)
        state.setdefault(int(idx), {})[name] = v
    for idx, sc in rest.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(sc)
    try:
        opt.load_state_dict({"state": state, "param_groups": rest["param_groups"]})
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"the optimizer state does not fit this model ({e})") from None
