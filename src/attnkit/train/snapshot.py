"""What one training step changes besides the parameters, saved so that a step can be undone.

A forward pass draws random numbers (dropout, REINFORCE's sampled alignments) and may update
buffers (the moving-average baseline of hard attention, batch-norm statistics). A step that
Ctrl-C cuts short before its optimizer update must leave neither behind, or the checkpoint
saved at the interrupt is not the state before that step and resuming is not exact.
``StepSnapshot.take()`` before the step, ``restore()`` to undo it.
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["StepSnapshot", "rng_tensors", "set_rng", "saved_buffer_names"]


def rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    """The RNG states a checkpoint saves: torch's CPU generator, and the device's on CUDA."""
    out = {"rng/torch": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng/cuda"] = torch.cuda.get_rng_state(device)
    return out


def set_rng(tensors: dict[str, torch.Tensor], device: torch.device) -> None:
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"])
    if device.type == "cuda" and "rng/cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng/cuda"], device)


def saved_buffer_names(model: torch.nn.Module) -> tuple[str, ...]:
    """The entries of ``model.state_dict()`` that are not parameters (its persistent buffers)."""
    params = {k for k, _ in model.named_parameters(remove_duplicate=False)}
    return tuple(k for k in model.state_dict() if k not in params)


class StepSnapshot:
    """The RNG states and saved buffers of ``model`` as they were before the current step."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.model, self.device = model, device
        self.names = saved_buffer_names(model)
        self.rng: Optional[dict[str, torch.Tensor]] = None
        self.buffers: dict[str, torch.Tensor] = {}

    def take(self) -> None:
        self.rng = rng_tensors(self.device)
        if self.names:  # buffers are small (a baseline, norm statistics); parameters are not copied
            state = self.model.state_dict()
            self.buffers = {k: state[k].clone() for k in self.names}

    def restore(self) -> None:
        if self.rng is not None:
            set_rng(self.rng, self.device)
        if self.buffers:
            self.model.load_state_dict(self.buffers, strict=False)
