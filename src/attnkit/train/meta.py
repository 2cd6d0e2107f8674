"""What a run records about its model: the config as a dict, the registry name, a checkpoint's metadata.

Read the same way whatever holds the config (a mapping, a dataclass, an object with ``to_dict()``),
so the loop, the report and the CLI agree on what a checkpoint says about the model it holds.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

__all__ = ["model_config", "model_name", "checkpoint_meta"]


def model_config(model: Any) -> dict[str, Any]:
    """``model.config`` as a plain dict (a mapping, a dataclass, or an object with ``to_dict()``)."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return {}
    if isinstance(cfg, Mapping):
        return dict(cfg)
    if hasattr(cfg, "to_dict"):
        return dict(cfg.to_dict())
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        out = dataclasses.asdict(cfg)
        name = getattr(cfg, "model", None)
        return {"model": name, **out} if name is not None and "model" not in out else out
    raise TypeError(f"model.config must be a mapping or a dataclass, got {type(cfg).__name__}")


def model_name(model: Any) -> str:
    """The registry name of ``model`` (``config["model"]`` or its config's ``model`` field)."""
    cfg = getattr(model, "config", None)
    name = cfg.get("model") if isinstance(cfg, Mapping) else getattr(cfg, "model", None)
    return str(name) if name else type(model).__name__


def checkpoint_meta(task: Any, model: Any, **extra: Any) -> dict[str, Any]:
    """What a checkpoint's JSON holds besides ``extra``: the task, the model config and the vocabularies."""
    meta = {"task": task.describe(), "config": model_config(model)}
    vocab = {}
    for side in ("src_vocab", "tgt_vocab", "vocab"):
        v = getattr(task, side, None)
        if v is not None and hasattr(v, "to_json"):
            vocab[side] = v.to_json()
    meta["vocab"] = vocab
    meta.update(extra)
    return meta
