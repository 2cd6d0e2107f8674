"""Sigma-pi units: Rumelhart, Hinton & McClelland 1986, "A General Framework for
Parallel Distributed Processing" (PDP vol. 1, ch. 2; no arXiv id).

``y_k = Σ_j w_kj Π_{i ∈ S_j} x_i  (+ b_k)``

Each unit sums weighted products of "conjuncts" S_j of its inputs: one input
gates another multiplicatively, the 1980s ancestor of multiplicative
attention (Luong's ``h_tᵀ W h̄_s`` is a sigma-pi unit over pairs).
"""

from __future__ import annotations

import itertools
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from ._common import check_dim
from .registry import register_mechanism

__all__ = ["SigmaPi", "sigma_pi"]


def sigma_pi(x: Tensor, index: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``y_k = Σ_j w_kj Π_i x[index[j, i]]`` where index pads short conjuncts with
    ``x.shape[-1]`` (a constant 1). x (..., n), index (J, order), weight (K, J) -> (..., K)."""
    ones = torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)
    xp = torch.cat([x, ones], dim=-1)  # (..., n + 1): the last entry is the padding 1
    terms = xp[..., index].prod(-1)  # (..., J, order) -> (..., J)
    y = terms @ weight.transpose(0, 1)  # (..., K)
    return y if bias is None else y + bias


@register_mechanism(
    "sigma-pi", "sigmapi", kind="unit",
    paper="Rumelhart, Hinton & McClelland 1986 (PDP vol. 1, ch. 2)",
    formula="y_k = Σ_j w_kj Π_{i∈S_j} x_i",
)
class SigmaPi(nn.Module):
    """A layer of sigma-pi units: ``y_k = Σ_j w_kj Π_{i∈S_j} x_i + b_k``.

    Args:
        in_features: n, the size of x.
        out_features: K units; default ``in_features``.
        order: with ``conjuncts=None``, every subset of 1..order inputs is a
            conjunct (order 2: each x_i and each product x_i x_j, i < j).
        conjuncts: explicit conjuncts, e.g. ``[(0,), (1,), (0, 1)]``.
        bias: add b_k.

    ``forward(x (..., in_features)) -> (..., out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        *,
        out_features: Optional[int] = None,
        order: int = 2,
        conjuncts: Optional[Sequence[Sequence[int]]] = None,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_dim(in_features, "in_features")
        check_dim(out_features, "out_features", allow_none=True)
        check_dim(order, "order")
        n = in_features
        if conjuncts is None:
            if order > n:
                raise ValueError(f"order={order} exceeds in_features={n}; products have at most {n} factors")
            conjuncts = [c for r in range(1, order + 1) for c in itertools.combinations(range(n), r)]
        conj = [tuple(int(i) for i in c) for c in conjuncts]
        if not conj or any(len(c) == 0 for c in conj):
            raise ValueError("conjuncts must be a non-empty list of non-empty index tuples, e.g. [(0,), (0, 1)]")
        bad = [c for c in conj if any(i < 0 or i >= n for i in c)]
        if bad:
            raise ValueError(f"conjuncts {bad} index outside 0..{n - 1} (in_features={n})")
        width = max(len(c) for c in conj)
        index = torch.tensor([list(c) + [n] * (width - len(c)) for c in conj], dtype=torch.long)  # (J, order)
        self.in_features, self.out_features = n, out_features or n
        self.conjuncts = conj
        self.register_buffer("index", index, persistent=False)
        fk = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(self.out_features, len(conj), **fk))  # (K, J)
        self.bias = nn.Parameter(torch.zeros(self.out_features, **fk)) if bias else None
        nn.init.uniform_(self.weight, -1 / len(conj) ** 0.5, 1 / len(conj) ** 0.5)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.shape[-1] != self.in_features:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"SigmaPi expects x (..., {self.in_features}), got {got}")
        return sigma_pi(x, self.index, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, out_features={self.out_features}, conjuncts={len(self.conjuncts)}"
