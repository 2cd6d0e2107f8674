"""FSDP2 for the Transformer models: parameters, gradients and Adam moments sharded across ranks.

``fully_shard`` (PyTorch's FSDP2; the algorithm of Zhao et al. 2023, "PyTorch FSDP: Experiences on
Scaling Fully Sharded Data Parallel", arXiv:2304.11277) is applied to every Transformer layer of the
model (``layers`` of the GPT and BERT, ``encoder`` / ``decoder`` of the encoder-decoder) and then
to the root. Each rank keeps 1/P of every parameter as a DTensor; a layer's full weights are
all-gathered for its forward and backward and its gradients reduce-scattered, averaged over ranks,
so the loss weighting of :mod:`attnkit.train.distributed` (the global-batch mean) holds unchanged.

Checkpoints stay the one format every command reads: :func:`full_state` gathers the full weights
and the full Adam moments (``torch.distributed.checkpoint.state_dict`` with
``full_state_dict=True``, on the CPU) onto rank 0, which writes the usual safetensors + JSON
checkpoint, so ``evaluate`` / ``predict`` / ``generate`` load it as any other and a run resumes
with or without FSDP at any world size. Alongside every ``last`` checkpoint each rank writes its
own shards with ``torch.distributed.checkpoint`` (DCP) into ``RUN/last.dcp/`` (to a temporary
directory renamed into place by rank 0); an FSDP resume loads them (:func:`load_sharded`) after
the full checkpoint was validated and loaded, and refuses to start without them. DCP unpickles its
``.metadata``: resume with FSDP only a run directory you trust (without FSDP nothing is unpickled,
as everywhere in attnkit). The full Adam moments moved onto the shards by :func:`shard_model`
(``set_optimizer_state_dict(full_state_dict=True)``) did not give rank 1 its own rows here
(torch 2.13, CPU, gloo), which is why the DCP shards are what an FSDP resume reads.
A Ctrl-C under FSDP saves nothing (a gather needs every rank): the last periodic checkpoint stands.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

__all__ = ["shard_model", "full_state", "load_full_weights", "save_sharded", "load_sharded", "transformer_layers",
           "DCP_NAME"]

DCP_NAME = "last.dcp"


def transformer_layers(model: nn.Module) -> list[nn.Module]:
    """The Transformer layers of ``model``: the entries of its ``layers``, ``encoder`` and ``decoder`` lists."""
    out: list[nn.Module] = []
    for name in ("layers", "encoder", "decoder"):
        block = getattr(model, name, None)
        if isinstance(block, nn.ModuleList):
            out.extend(block)
    return out


def shard_model(model: nn.Module, optimizer: torch.optim.Optimizer,
                make: Callable[[Any], torch.optim.Optimizer]) -> torch.optim.Optimizer:
    """``fully_shard`` every Transformer layer, then the root; returns a new optimizer (made by
    ``make(params)``) over the sharded parameters holding ``optimizer``'s state, sharded."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    layers = transformer_layers(model)
    if not layers:
        name = getattr(getattr(model, "config", None), "model", type(model).__name__)
        raise ValueError(f"FSDP shards the layers of a Transformer model (gpt, bert, transformer); the {name!r} "
                         "model has none: train it without FSDP (DDP keeps a copy of it on every process)")
    full = StateDictOptions(full_state_dict=True)
    state = get_optimizer_state_dict(model, optimizer, options=full) if optimizer.state else None
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    for method in ("generate",):  # entry points that do not go through forward (the encoder-decoder's decoding)
        if hasattr(model, method):
            register_fsdp_forward_method(model, method)
    sharded = make(model.parameters())
    if state is not None:
        set_optimizer_state_dict(model, sharded, state, options=full)
    return sharded


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer, *, optim: bool) -> tuple[dict, Optional[tuple]]:
    """(full weights, (optimizer tensors, rest) in the checkpoint's index form or None) on rank 0
    (empty elsewhere); every rank must call it (it all-gathers)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=opts)
    if not optim:
        return weights, None
    osd = get_optimizer_state_dict(model, optimizer, options=opts)
    if not osd:
        return weights, None
    # FQN-keyed -> the index form of optimizer_to_tensors: index = position in the param groups' order
    order = [fqn for g in osd["param_groups"] for fqn in g["params"]]
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for i, fqn in enumerate(order):
        for k, v in osd["state"].get(fqn, {}).items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim/{i}/{k}"] = v
            else:
                scalars.setdefault(str(i), {})[k] = v
    groups, start = [], 0
    for g in osd["param_groups"]:
        groups.append({**g, "params": list(range(start, start + len(g["params"])))})
        start += len(g["params"])
    return weights, (tensors, {"param_groups": groups, "scalars": scalars})


def load_full_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Full (unsharded) ``weights`` into a sharded model: every rank keeps its shard."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))


def save_sharded(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int, *, rank: int,
                 barrier: Callable[[], None]) -> None:
    """Every rank writes its shards (DCP) to ``RUN/.last.dcp.tmp``; rank 0 renames it to ``RUN/last.dcp``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    tmp, final = run_dir / f".{DCP_NAME}.tmp", run_dir / DCP_NAME
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    barrier()
    msd, osd = get_state_dict(model, optimizer)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(tmp))
    barrier()
    if rank == 0:
        (tmp / "attnkit.json").write_text(json.dumps({"step": int(step)}) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    barrier()


def load_sharded(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> bool:
    """Load ``RUN/last.dcp`` into the sharded ``model`` / ``optimizer`` when it was written at ``step``
    (the ``last`` checkpoint's); returns whether it did. DCP unpickles its ``.metadata``: a trusted
    directory only."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    final = run_dir / DCP_NAME
    try:
        saved = json.loads((final / "attnkit.json").read_text()).get("step")
    except (OSError, ValueError, AttributeError):
        return False
    if saved != step:
        return False
    msd, osd = get_state_dict(model, optimizer)
    state = {"model": msd, "optim": osd}
    dcp.load(state, checkpoint_id=str(final))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    return True
