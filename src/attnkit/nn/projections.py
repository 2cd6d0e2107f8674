"""Projections of queries, keys and values, and their reuse across decoder steps.

* :class:`InProjection`: the q / k / v rows of one fused in-projection
  ``[q | k | v] = x W_inᵀ + b_in`` (``torch.nn.MultiheadAttention``'s
  ``in_proj_weight``, nanoGPT's ``c_attn``: Vaswani et al. 2017, arXiv:1706.03762,
  ``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)`` with the three W stacked).
* Reuse: a projection of the encoder outputs does not change from one decoder
  step to the next (Bahdanau et al. 2014, arXiv:1409.0473, footnote: ``W_k k_s``
  is computed once per source). :func:`projected_keys` carries ``keys W_kᵀ`` of
  the additive and Luong layers in their state; :class:`ProjectionSource` tells a
  :class:`~attnkit.nn.kv_cache.KVCache` of multi-head cross-attention whether it
  may be reused. Both reuse only for the very same input tensor with the weights
  not modified in place since (their version counters).
* :class:`ProjectedAdditive`: the additive score ``vᵀ tanh(W_q q + kp)`` over keys
  already projected (``kp = W_k k``).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from ..core.scores import Additive

__all__ = ["InProjection", "ProjectionSource", "projected_keys", "ProjectedAdditive", "split_heads"]


def split_heads(x: Tensor, heads: int, head_dim: int) -> Tensor:
    """(B, N, heads·Dh) -> (B, heads, N, Dh), a view."""
    B, N, _ = x.shape
    return x.view(B, N, heads, head_dim).transpose(1, 2)  # (B, heads, N, Dh)


class InProjection:
    """``q_proj`` / ``k_proj`` / ``v_proj`` of a fused in-projection: nn.Linear's interface
    (``weight``, ``bias``, ``in_features``, ``out_features``, call) over rows
    ``start:stop`` of the owner's ``in_proj_weight`` / ``in_proj_bias`` (the owner,
    a :class:`~attnkit.nn.MultiHeadAttention`, has ``embed_dim`` input features).

    One (H + 2 Hk)·Dh x D parameter lets self-attention run one matmul with no
    per-call concatenation of weights (and its backward), and gives the
    optimizer one tensor instead of three.
    """

    def __init__(self, owner: nn.Module, start: int, stop: int) -> None:
        self.owner, self.start, self.stop = owner, start, stop
        self.in_features, self.out_features = owner.embed_dim, stop - start

    @property
    def weight(self) -> Tensor:
        return self.owner.in_proj_weight[self.start:self.stop]  # (out, D), a view

    @property
    def bias(self) -> Optional[Tensor]:
        b = self.owner.in_proj_bias
        return None if b is None else b[self.start:self.stop]

    def __call__(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight, self.bias)

    def __repr__(self) -> str:
        return (
            f"InProjection(in_features={self.in_features}, out_features={self.out_features}, "
            f"rows={self.start}:{self.stop})"
        )


class ProjectionSource:
    """What a stored projection was computed from: input tensors (by identity) and the
    version counters of the weights.

    ``matches(inputs, weights)`` is True only for these very tensors, with weights
    not modified in place since (an optimizer step bumps the counters).
    """

    __slots__ = ("inputs", "versions")

    def __init__(self, inputs: Sequence[Tensor], weights: Sequence[Tensor]) -> None:
        self.inputs = tuple(inputs)
        self.versions = tuple(w._version for w in weights)

    def matches(self, inputs: Sequence[Tensor], weights: Sequence[Tensor]) -> bool:
        return (
            len(inputs) == len(self.inputs)
            and all(a is b for a, b in zip(inputs, self.inputs))
            and tuple(w._version for w in weights) == self.versions
        )


def projected_keys(keys: Tensor, w_k: Tensor, state: Any) -> tuple[Tensor, dict]:
    """``keys W_kᵀ`` (B, S, D) and the state that carries it to the next step.

    The state is ``{"keys", "w_k_version", "projected_keys"}``, plain tensors and
    numbers (a beam search indexes every tensor in it). It is reused only when it
    was made from this very ``keys`` tensor and ``w_k`` has not been modified in
    place since (its version counter); any other state is ignored.
    """
    version = w_k._version
    if (
        isinstance(state, dict)
        and state.get("keys") is keys
        and state.get("w_k_version") == version
        and isinstance(state.get("projected_keys"), Tensor)
    ):
        return state["projected_keys"], state
    kp = keys @ w_k.transpose(0, 1)  # (B, S, Dk) @ (Dk, D) -> (B, S, D)
    return kp, {"keys": keys, "w_k_version": version, "projected_keys": kp}


class ProjectedAdditive(Additive):
    """The additive score over keys already projected by W_k (``kp = k W_kᵀ``, (.., S, D)).

    ``project(q, kp) = (W_q q + b, kp)``; ``pairwise`` is :class:`Additive`'s
    own, so every backend that tiles the additive score runs it unchanged.
    """

    def __init__(self, w_q: Tensor, v: Tensor, bias: Optional[Tensor] = None) -> None:
        for n, t in (("w_q", w_q), ("v", v)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{n} must be a Tensor, got {type(t).__name__}")
        if v.shape[-1] != w_q.shape[-2]:
            raise ValueError(f"w_q {tuple(w_q.shape)} and v {tuple(v.shape)} disagree on D")
        self.w_q, self.w_k, self.v, self.bias = w_q, None, v, bias

    def check(self, q: Tensor, k: Tensor) -> None:
        if self.w_q.shape[-1] != q.shape[-1]:
            raise ValueError(f"w_q has shape {tuple(self.w_q.shape)} but query has {q.shape[-1]} features")
        if k.shape[-1] != self.v.shape[-1]:
            raise ValueError(f"projected keys have {k.shape[-1]} features; expected D = {self.v.shape[-1]}")

    def project(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        qp = torch.matmul(q, self.w_q.to(q.dtype).transpose(-1, -2))  # (B, H, L, D)
        if self.bias is not None:
            qp = qp + self.bias.to(q.dtype)
        return qp, k
