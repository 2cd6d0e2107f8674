"""Checkpoints: safetensors for tensors, JSON for everything else, committed atomically.

A checkpoint named ``last`` or ``best`` in a run directory is two files::

    last.json                          the commit record: format, step, config, vocabularies,
                                       metrics, training state, the name + sha256 of ...
    last-00001200-3f9a1c2e.safetensors ... the tensors (model, optimizer moments, RNG states),
                                       and ``record_sha256``, the sha256 of the rest of the record

Saving first removes stale temporary files (see :func:`clean_stale_temporaries`), writes the
tensors to a fresh file (temporary name, fsync, rename), then replaces the JSON the same way,
then deletes the tensors the old JSON pointed at. Whatever the crash (Ctrl-C, kill, disk full),
the JSON names a complete tensor file: the new one or the previous one.

Loading reads only JSON and safetensors (never pickle) and trusts nothing in them: it checks the
format, the record's own sha256 (an edited record is refused), the weights' sha256, the names of
the tensors and every size the record sets against the bounds below, before anything acts on
them. :func:`check_model_tensors` and :func:`check_optimizer_state` then hold every tensor's key,
shape and dtype against the model and the optimizer it is loaded into. Every problem is a
:class:`CheckpointError` (a ValueError) naming the file and what is wrong. The hashes detect
damage and edits; they are not a signature: a crafted run directory with recomputed hashes is
stopped by the checks, never by trust.

Records of format ``attnkit-checkpoint/1`` (before the record was hashed) still load, with their
weights' sha256 checked and every other check applied; the next save of that checkpoint writes
format 2.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from ..data.base import OPTION_LIMITS

__all__ = [
    "FORMAT",
    "LEGACY_FORMATS",
    "LIMITS",
    "save_checkpoint",
    "load_checkpoint",
    "write_atomic",
    "checkpoint_exists",
    "clean_stale_temporaries",
    "check_model_tensors",
    "check_optimizer_state",
    "check_rng_tensors",
    "check_state",
    "CheckpointError",
]

FORMAT = "attnkit-checkpoint/2"
LEGACY_FORMATS = ("attnkit-checkpoint/1",)  # the record is not hashed; the weights are
NAMES = ("last", "best")

#: What a checkpoint's files may set; a larger value is refused, the bound named, before it is used.
LIMITS: dict[str, int] = {
    "record_bytes": 16 * 2**20,  # the JSON record
    "task_number": OPTION_LIMITS["number"],  # any number among the task's options: examples per split, ranges
    "task_length": OPTION_LIMITS["length"],  # a length among the task's options (min_len, max_len, block_size)
    "steps": 10**9,  # steps, budgets, epochs, evaluation sizes, warm-up, batch size
    "vocab": 2**20,  # tokens of one vocabulary
    "seed": 2**40,  # |seed|; seed * 1_000_003 + epoch must fit torch's 64-bit seeds
    "model_floor": 2**16,  # an int of the model config is at most max(this, the elements of its tensors)
}
STALE_TMP_SECONDS = 3600  # a temporary file untouched this long has no live writer, whatever its name says

_TMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?:(?P<pid>\d+)-)?[0-9a-f]{8}$")
_TENSOR_KEY = re.compile(r"^(model/.+|optim/(0|[1-9]\d{0,8})/[A-Za-z_][A-Za-z0-9_]*|rng/torch|rng/cuda)$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, partial, tampered, crafted or from another format."""


# -- writing -------------------------------------------------------------------------------------
def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either untouched or complete.

    Writes ``.NAME.tmp-<pid>-<8 random hex digits>`` beside ``path``, fsyncs it, renames it over
    ``path`` (os.replace is atomic on POSIX and Windows) and fsyncs the directory. On any error the
    temporary file is removed and an OSError naming the file, and whether an older ``path`` is
    still there, is raised.
    """
    path = Path(path)
    existed = path.exists()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(e, OSError):
            kept = f"the previous {path.name} is intact" if existed else f"{path.name} was not created"
            raise OSError(e.errno, f"could not write {path} ({_why(e)}); {kept}") from e
        raise
    # make the rename durable; directories cannot be opened or fsynced on every platform
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _why(e: OSError) -> str:
    return "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))


def _pid_alive(pid: int) -> bool | None:
    """Whether process ``pid`` runs on this machine (None: cannot tell here)."""
    if os.name != "posix":
        return None  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process (or a pid we cannot ask about): keep its file
    return True


def clean_stale_temporaries(run_dir: str | Path, *, now: float | None = None) -> list[Path]:
    """Remove the temporary files that a killed writer left in ``run_dir``; returns them.

    A temporary file ``.NAME.tmp-PID-HEX`` is stale when no process PID runs on this machine (its
    writer died: ``kill -9``, out of memory, power loss) or when it has not been modified for
    ``STALE_TMP_SECONDS`` (covers a reused PID and the ``.NAME.tmp-HEX`` names of older versions).
    A live writer's file is never removed: its PID runs and it is being written now. Writers on
    other machines sharing the directory are not seen by the PID rule; the age rule covers them.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(Path(run_dir).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TMP.match(p.name)
        if m is None:
            continue
        try:
            age = now - p.lstat().st_mtime
        except OSError:
            continue
        pid = int(m["pid"]) if m["pid"] else None
        if age >= STALE_TMP_SECONDS or (pid is not None and pid != os.getpid() and _pid_alive(pid) is False):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record_digest(record: Mapping[str, Any]) -> str:
    """sha256 of the record without ``record_sha256``, as canonical JSON (sorted keys, no spaces)."""
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return _digest(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode())


def _committed(path: Path) -> str:
    """What a failed save leaves of checkpoint ``path`` (its JSON record), in words that are true."""
    if not path.exists():
        return f"{path.parent} held no {path.stem!r} checkpoint before, so there is none yet (nothing was lost)"
    try:
        step = json.loads(path.read_bytes()).get("step")
    except (OSError, ValueError, AttributeError, RecursionError):
        return f"the earlier {path.name} is left as it was (it was already unreadable)"
    return f"the previous checkpoint is intact ({path.name}, step {step})"


def save_checkpoint(run_dir: str | Path, name: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Commit ``tensors`` + ``meta`` as checkpoint ``name`` ("last" or "best") of ``run_dir``."""
    from safetensors.torch import save

    if name not in NAMES:
        raise ValueError(f"checkpoint name must be one of {', '.join(NAMES)}, got {name!r}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(run_dir)
    rec_path = run_dir / f"{name}.json"
    step = int(meta.get("step", 0))
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    data = save(tensors)
    weights = f"{name}-{step:08d}-{secrets.token_hex(4)}.safetensors"
    # what is hashed is what a reader will parse: the record after one JSON round trip
    record = json.loads(json.dumps({"format": FORMAT, **meta, "weights": weights, "sha256": _digest(data)}))
    record["record_sha256"] = _record_digest(record)
    target = run_dir / weights
    try:
        write_atomic(target, data)
        try:
            target = rec_path
            write_atomic(rec_path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
        except BaseException:
            (run_dir / weights).unlink(missing_ok=True)
            raise
    except OSError as e:
        cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
        raise OSError(e.errno, f"could not save checkpoint {name!r}: writing {target} failed ({_why(cause)}); "
                      f"{_committed(rec_path)}") from cause
    for old in run_dir.glob(f"{name}-*.safetensors"):
        if old.name != weights:
            old.unlink(missing_ok=True)
    return rec_path


def checkpoint_exists(run_dir: str | Path, name: str = "last") -> bool:
    return (Path(run_dir) / f"{name}.json").is_file()


# -- reading -------------------------------------------------------------------------------------
class Tensors(dict):
    """The tensors of one checkpoint; ``source`` names its record in error messages."""

    source: str = "the checkpoint"


def _numbers(obj: Any, path: str) -> list[tuple[str, Any]]:
    """(where, value) of every number (not bool) inside a JSON value."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return []
    if isinstance(obj, (int, float)):
        return [(path, obj)]
    if isinstance(obj, dict):
        return [x for k, v in obj.items() for x in _numbers(v, f"{path}.{k}")]
    if isinstance(obj, list):
        return [x for i, v in enumerate(obj) for x in _numbers(v, f"{path}[{i}]")]
    return []


def _check_record(meta: dict[str, Any], rec: Path) -> None:
    """Types and bounds of everything the record sets that is acted on (see ``LIMITS``)."""

    def bad(msg: str) -> None:
        raise CheckpointError(f"{rec}: {msg}")

    def whole(where: str, v: Any, lo: int, hi: int, bound: str, *, none: bool = False) -> None:
        if v is None and none:
            return
        if isinstance(v, bool) or not isinstance(v, int):
            bad(f"{where} must be an integer, got {v!r}")
        if not lo <= v <= hi:
            bad(f"{where} is {v}, outside the bound {lo} <= {where} <= {hi} ({bound})")

    def real(where: str, v: Any, *, none: bool = False) -> None:
        if v is None and none:
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            bad(f"{where} must be a finite number, got {v!r}")

    for key in ("config", "task", "train", "vocab", "metrics", "summary"):
        if key in meta and not isinstance(meta[key], dict):
            bad(f"{key!r} must be a JSON object, got {type(meta[key]).__name__}")
    steps = LIMITS["steps"]
    whole("step", meta.get("step", 0), 0, steps, "LIMITS['steps']")
    task = meta.get("task")
    if task is not None:
        if not isinstance(task.get("name"), str) or not isinstance(task.get("options", {}), dict):
            bad("'task' must hold a task name and a JSON object of options")
        for where, v in _numbers(task.get("options", {}), "task.options"):
            leaf = where.rsplit(".", 1)[-1]
            key = "seed" if leaf == "seed" else "task_number"
            if leaf.endswith(("_len", "block_size")):
                key = "task_length"
            if not (math.isfinite(v) and abs(v) <= LIMITS[key]):
                bad(f"{where} is {v}, above the bound |{where}| <= {LIMITS[key]} (LIMITS[{key!r}])")
    for side, v in meta.get("vocab", {}).items():
        toks = v.get("tokens") if isinstance(v, dict) else None
        kind = v.get("kind", "char") if isinstance(v, dict) else None
        if not isinstance(toks, list) or not all(isinstance(t, str) for t in toks) or not isinstance(kind, str):
            bad(f"vocab.{side} must be {{'kind': str, 'tokens': [str, ...]}}")
        if len(toks) > LIMITS["vocab"]:
            bad(f"vocab.{side} has {len(toks)} tokens, above the bound {LIMITS['vocab']} (LIMITS['vocab'])")
        if len(set(toks)) != len(toks):
            seen: set[str] = set()
            dup = next(t for t in toks if t in seen or seen.add(t))
            bad(f"vocab.{side} lists the token {dup!r} twice; a vocabulary maps each token to one id")
    train = meta.get("train")
    if train is None:
        return
    opts, state = train.get("options", {}), train.get("state", {})
    if not isinstance(opts, dict) or not isinstance(state, dict):
        bad("train.options and train.state must be JSON objects")
    if not isinstance(train.get("optimizer", {}), (dict, type(None))):
        bad("train.optimizer must be a JSON object")
    for k in ("steps", "batch_size", "eval_every", "eval_examples"):
        if k in opts:
            whole(f"train.options.{k}", opts[k], 1, steps, "LIMITS['steps']", none=k == "steps")
    if "warmup" in opts:
        whole("train.options.warmup", opts["warmup"], 0, steps, "LIMITS['steps']")
    for k in ("lr", "min_lr_ratio", "weight_decay", "clip", "minutes", "stop_at"):
        if k in opts:
            real(f"train.options.{k}", opts[k], none=k in ("minutes", "stop_at"))
    if "seed" in state:
        whole("train.state.seed", state["seed"], -LIMITS["seed"], LIMITS["seed"], "LIMITS['seed']")
    step = state.get("step", 0)
    whole("train.state.step", step, 0, steps, "LIMITS['steps']")
    if "step" in meta and meta["step"] != step:
        bad(f"step is {meta['step']} but train.state.step is {step}")
    for k in ("epoch", "offset"):  # neither can exceed the steps taken
        if k in state:
            whole(f"train.state.{k}", state[k], 0, step, "train.state.step")
    if state.get("best_step") is not None:
        whole("train.state.best_step", state["best_step"], 0, step, "train.state.step")
    if "train_tokens" in state:
        whole("train.state.train_tokens", state["train_tokens"], 0, 2**62, "2**62")
    for k in ("seconds", "train_seconds"):
        if k in state:
            real(f"train.state.{k}", state[k])


def _check_sizes(meta: dict[str, Any], tensors: Mapping[str, Tensor], rec: Path) -> None:
    """The model config cannot ask for a model larger than the weights it comes with."""
    model = [t for k, t in tensors.items() if k.startswith("model/")]
    elements = sum(t.numel() for t in model)
    bound = max(LIMITS["model_floor"], elements)
    for where, v in _numbers(meta.get("config", {}), "config"):
        if not math.isfinite(v) or abs(v) > bound:
            raise CheckpointError(f"{rec}: {where} is {v}, above the bound |{where}| <= {bound} "
                                  "(the elements of the model's tensors, at least LIMITS['model_floor'])")
        if where.endswith("layers") and isinstance(v, int) and v > len(model):
            raise CheckpointError(f"{rec}: {where} is {v}, but the weights hold only {len(model)} model tensors")


def load_checkpoint(run_dir: str | Path, name: str = "best") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, meta) of checkpoint ``name``; clear errors for every way it can be broken."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(f"run directory {run_dir} does not exist; "
                                f"train one with `attnkit train TASK --out {run_dir}`")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is a file, not a run directory")
    rec_path = run_dir / f"{name}.json"
    if not rec_path.is_file():
        have = [n for n in NAMES if (run_dir / f"{n}.json").is_file()]
        hint = (f"; it has: {', '.join(have)}" if have
                else "; it holds no checkpoint (was training interrupted before the first save?)")
        raise FileNotFoundError(f"{rec_path} is missing{hint}")
    size = rec_path.stat().st_size
    if size > LIMITS["record_bytes"]:
        raise CheckpointError(f"{rec_path} is {size} bytes, above the bound of {LIMITS['record_bytes']} "
                              "(LIMITS['record_bytes']); it is not a checkpoint record")
    try:
        meta = json.loads(rec_path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{rec_path} is not valid JSON ({e}); the checkpoint is damaged") from None
    fmt = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
    if fmt != FORMAT and fmt not in LEGACY_FORMATS:
        raise CheckpointError(f"{rec_path} is not an attnkit checkpoint (format {fmt!r}, expected {FORMAT!r})")
    for key in ("weights", "sha256", "config"):
        if key not in meta:
            raise CheckpointError(f"{rec_path} lacks {key!r}; the checkpoint is damaged")
    if not isinstance(meta["weights"], str) or Path(meta["weights"]).name != meta["weights"]:
        raise CheckpointError(f"{rec_path} names weights outside the run directory: {meta['weights']!r}")
    if not meta["weights"].endswith(".safetensors"):
        raise CheckpointError(f"{rec_path} names weights {meta['weights']!r}, not a .safetensors file")
    if fmt == FORMAT and meta.get("record_sha256") != _record_digest(meta):
        raise CheckpointError(f"{rec_path} does not match its record_sha256 (edited or damaged); "
                              "retrain, or resume from another copy of the run")
    _check_record(meta, rec_path)
    wpath = run_dir / meta["weights"]
    if not wpath.is_file():
        raise CheckpointError(f"{wpath} is missing; {rec_path.name} points at it, so the run directory is incomplete")
    data = wpath.read_bytes()
    if _digest(data) != meta["sha256"]:
        raise CheckpointError(
            f"{wpath} does not match the sha256 recorded in {rec_path.name} (truncated or modified); "
            "retrain, or resume from another copy of the run"
        )
    try:
        loaded = load(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"{wpath} is not a valid safetensors file ({e})") from None
    for k in loaded:
        if not _TENSOR_KEY.match(k):
            raise CheckpointError(f"{wpath} holds an unexpected tensor {k!r}; "
                                  "a checkpoint holds model/*, optim/INDEX/NAME, rng/torch and rng/cuda only")
    _check_sizes(meta, loaded, rec_path)
    tensors = Tensors(loaded)
    tensors.source = str(rec_path)
    return tensors, meta


# -- tensors against what they are loaded into ---------------------------------------------------
def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_model_tensors(model: torch.nn.Module, tensors: Mapping[str, Tensor], *, source: str | None = None) -> None:
    """Every ``model/KEY`` tensor has a key, shape and dtype of ``model.state_dict()``, and none is missing.

    ``model`` may live on the meta device (its shapes are all this reads).
    """
    where = source or getattr(tensors, "source", "the checkpoint")
    expected = model.state_dict()
    got = split_prefix(dict(tensors), "model")
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else "")] if missing else []) + \
                ([f"unexpected {', '.join(extra[:3])}" + (" ..." if len(extra) > 3 else "")] if extra else [])
        raise CheckpointError(f"{where}: the model tensors do not fit the saved model config ({'; '.join(parts)})")
    for k, ref in expected.items():
        t = got[k]
        if _shape(t) != _shape(ref) or t.dtype != ref.dtype:
            raise CheckpointError(f"{where}: model/{k} is {t.dtype} {list(t.shape)}; "
                                  f"the model built from its config has {ref.dtype} {list(ref.shape)}")


_ADAM_FLAGS = ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay")


def check_optimizer_state(optimizer: torch.optim.Optimizer, tensors: Mapping[str, Tensor], rest: Any, *,
                          model: torch.nn.Module | None = None, source: str | None = None) -> None:
    """The saved optimizer state (``optim/INDEX/NAME`` tensors + ``rest``) fits ``optimizer``.

    Param groups list the same parameters in the same order; every hyperparameter is a finite
    number and every flag that picks a kernel path is the optimizer's own; each state tensor of a
    parameter is the parameter's shape and dtype (``step`` a float32 scalar with a whole value of
    at least 1); Adam's state is complete (``step``, ``exp_avg``, ``exp_avg_sq``, and
    ``max_exp_avg_sq`` with amsgrad). torch's fused AdamW trusts these shapes and writes out of
    bounds where they are wrong, so this runs before ``optimizer.load_state_dict``.
    """
    where = source or getattr(tensors, "source", "the checkpoint")

    def bad(msg: str) -> None:
        raise CheckpointError(f"{where}: the optimizer state does not fit this model: {msg}")

    current = optimizer.state_dict()["param_groups"]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    names = {id(p): n for n, p in model.named_parameters()} if model is not None else {}

    def pname(i: int) -> str:
        n = names.get(id(params[i]))
        return f"parameter {i} ({n})" if n else f"parameter {i}"

    groups = rest.get("param_groups") if isinstance(rest, dict) else None
    if not isinstance(groups, list) or len(groups) != len(current):
        n = len(groups) if isinstance(groups, list) else "no"
        bad(f"it has {n} parameter groups, the optimizer {len(current)}")
    adam = isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW))
    for gi, (sg, cg) in enumerate(zip(groups, current)):
        if not isinstance(sg, dict) or sg.get("params") != cg["params"]:
            bad(f"parameter group {gi} does not list parameters {cg['params'][0]}..{cg['params'][-1]} in order"
                if cg["params"] else f"parameter group {gi} must be empty")
        for k, v in sg.items():
            if k == "params":
                continue
            if k not in cg:
                bad(f"parameter group {gi} has an unknown setting {k!r}")
            ref = cg[k]
            if k == "betas":
                if not (isinstance(v, list) and len(v) == 2 and all(
                        isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in v)):
                    bad(f"parameter group {gi}: betas must be two numbers in [0, 1), got {v!r}")
            elif k in ("fused", "foreach"):
                if v not in (None, True, False):
                    bad(f"parameter group {gi}: {k} must be true, false or null, got {v!r}")
            elif isinstance(ref, bool) or ref is None:
                if v != ref:
                    bad(f"parameter group {gi}: {k} is {v!r}, this optimizer runs with {ref!r}")
            elif isinstance(ref, (int, float)):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    bad(f"parameter group {gi}: {k} must be a finite number >= 0, got {v!r}")
    amsgrad = adam and any(g.get("amsgrad") for g in optimizer.param_groups)
    need = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if amsgrad else set())
    state: dict[int, dict[str, Any]] = {}
    for k, t in split_prefix(dict(tensors), "optim").items():
        idx, _, name = k.partition("/")
        if not idx.isdigit() or int(idx) >= len(params):
            bad(f"optim/{k} names parameter {idx}; the optimizer has {len(params)} (0..{len(params) - 1})")
        state.setdefault(int(idx), {})[name] = t
    scalars = rest.get("scalars", {}) if isinstance(rest, dict) else {}
    if not isinstance(scalars, dict):
        bad("its scalars must be a JSON object")
    for idx, sc in scalars.items():
        if not (isinstance(idx, str) and idx.isdigit() and int(idx) < len(params)) or not isinstance(sc, dict):
            bad(f"scalar state {idx!r} does not name one of its {len(params)} parameters")
        for name, v in sc.items():
            if adam or name in state.get(int(idx), {}):
                bad(f"{pname(int(idx))} has a scalar {name!r} where a tensor is kept")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                bad(f"{pname(int(idx))}: scalar {name!r} must be a finite number, got {v!r}")
    for i, st in sorted(state.items()):
        p = params[i]
        if adam and set(st) != need:
            missing, extra = sorted(need - set(st)), sorted(set(st) - need)
            said = [f"no {', '.join(missing)}"] if missing else []
            said += [f"unexpected {', '.join(extra)}"] if extra else []
            bad(f"{pname(i)} has " + "; ".join(said))
        for name, t in st.items():
            if name == "step" or (t.dim() == 0 and not adam):
                if t.dim() != 0 or not t.is_floating_point():
                    bad(f"optim/{i}/{name} is {t.dtype} {list(t.shape)}; a step count is a float scalar")
                v = float(t)
                if name == "step" and not (math.isfinite(v) and v == int(v) and 1 <= v <= LIMITS["steps"]):
                    bad(f"optim/{i}/step is {v}; it counts updates, a whole number in 1..{LIMITS['steps']}")
            elif _shape(t) != _shape(p) or t.dtype != p.dtype:
                bad(f"optim/{i}/{name} is {t.dtype} {list(t.shape)}; {pname(i)} is {p.dtype} {list(p.shape)}")


def check_rng_tensors(tensors: Mapping[str, Tensor], *, source: str | None = None) -> None:
    """``rng/torch`` (and ``rng/cuda``) are byte tensors of the size torch's generator states have."""
    where = source or getattr(tensors, "source", "the checkpoint")
    for key in ("rng/torch", "rng/cuda"):
        if key not in tensors:
            continue
        t = tensors[key]
        ref = torch.get_rng_state() if key == "rng/torch" else (
            torch.cuda.get_rng_state() if torch.cuda.is_available() else t)
        if t.dtype != torch.uint8 or t.dim() != 1 or _shape(t) != _shape(ref):
            raise CheckpointError(f"{where}: {key} is {t.dtype} {list(t.shape)}; "
                                  f"a generator state is torch.uint8 {list(ref.shape)}")


def check_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, tensors: Mapping[str, Tensor],
                rest: Any) -> None:
    """Everything a ``last`` checkpoint restores, held against ``model`` and ``optimizer`` before use."""
    check_model_tensors(model, tensors)
    check_optimizer_state(optimizer, tensors, rest, model=model)
    check_rng_tensors(tensors)


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
