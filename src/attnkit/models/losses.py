"""Losses of the models: cross-entropy with the metrics a training step and an evaluation read.

``CE = -(1/N) Σ_i log softmax(z_i)[y_i]`` over the N targets that are not ``ignore_index``, with
optional label smoothing (Szegedy et al. 2016, arXiv:1512.00567):
``(1-ε)·CE + ε·mean_v(-log softmax(z_i)[v])``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cross_entropy_metrics"]


def cross_entropy_metrics(logits: Tensor, targets: Tensor, *, ignore_index: int = -100,
                           label_smoothing: float = 0.0, accuracy: bool = True,
                           tokens: Optional[int] = None) -> tuple[Tensor, dict[str, float]]:
    """Mean cross-entropy over non-ignored targets, with {"loss", "tokens"} and, when
    ``accuracy`` (the models pass ``not self.training``: evaluation), the top-1 accuracy;
    a training step does not pay for it (nothing reads it there). ``tokens``: the
    caller's count of targets when it knows it (a GPT training step: every position
    is a target), which saves counting them."""
    V = logits.shape[-1]
    flat = logits.reshape(-1, V)  # (N, V)
    tgt = targets.reshape(-1)  # (N,)
    loss = F.cross_entropy(flat, tgt, ignore_index=ignore_index, label_smoothing=label_smoothing)
    if tokens is not None and not accuracy:
        return loss, {"loss": float(loss.detach()), "tokens": tokens}
    with torch.no_grad():
        keep = tgt != ignore_index
        n = int(keep.sum())
        if not accuracy:
            return loss, {"loss": float(loss.detach()), "tokens": n}
        # correct where the target's logit is the largest: a gather and an amax instead of an
        # argmax over V (ties, of measure zero, count as correct)
        top = flat.gather(1, tgt.clamp(min=0).unsqueeze(1)).squeeze(1) >= flat.amax(-1)  # (N,)
        acc = float((top & keep).sum()) / max(n, 1)
    return loss, {"loss": float(loss.detach()), "accuracy": acc, "tokens": n}
