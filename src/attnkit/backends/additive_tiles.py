"""Bahdanau's additive score in closed form, for the tiled kernels (``chunked`` and ``triton``).

Bahdanau et al. 2014 (arXiv:1409.0473): ``pair_ij = Σ_d v_d tanh(qp_id + kp_jd)``.
Written without a tanh: ``tanh(x) = 1 - 2 r`` with ``r = 1 / (exp(2x) + 1)``, and
``exp(2(qp_i + kp_j)) = exp(2 qp_i) exp(2 kp_j)`` (the *separable* form), so the
exponentials are taken once per token and a pair costs a multiply, an add and a
division per feature. The separable form is exact while |qp|, |kp| <= SEPARABLE_BOUND
keeps the product inside float32's range; beyond it the exp is taken per pair.
The gradients are closed form too: ``∂t/∂x = 1 - t² = 4 r (1 - r)``.

:func:`additive_tiles` returns the three functions a tiled kernel needs (per-token
features, pair tile, pair gradients), compiled with ``torch.compile`` when asked: a
compiled tile keeps its (.., D) intermediate in registers. The compiled functions are
built once per process (:data:`COMPILED`) and fall back to eager when no compiler works.

Shape legend: B batch, H heads, bq / bk query / key tile rows, D projected features.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Callable

import torch
from torch import Tensor

from ..core.scores import Additive, Score

__all__ = [
    "SEPARABLE_BOUND",
    "separable_ok",
    "is_plain_additive",
    "additive_pair",
    "additive_pair_grads",
    "head_v",
    "AdditiveTiles",
    "additive_tiles",
    "COMPILED",
    "COMPILE_NOTICE",
]

#: the logger of compilation notices (a child of the ``attnkit`` logger; the CLI prints its INFO records)
_log = logging.getLogger("attnkit.compile")
#: what is logged, at INFO, before the process's first compilation of the additive tiles
COMPILE_NOTICE = ("compiling the additive-score attention tiles with torch.compile: the first call takes about "
                  "10 s, once per process (later calls of the same shapes reuse it)")

#: |qp|, |kp| bound of the separable form: exp(2·(a + b)) stays inside float32's range.
SEPARABLE_BOUND = 20.0


def separable_ok(qp: Tensor, kp: Tensor) -> bool:
    """Whether the separable form is exact here: |qp|, |kp| <= SEPARABLE_BOUND everywhere (one read of each)."""
    if not (qp.numel() and kp.numel()):
        return True
    return max(qp.detach().abs().amax().item(), kp.detach().abs().amax().item()) <= SEPARABLE_BOUND


def is_plain_additive(score: Score) -> bool:
    """Whether ``score`` is Bahdanau's additive score with its own ``pairwise`` (the closed form applies)."""
    return isinstance(score, Additive) and type(score).pairwise is Additive.pairwise


def additive_pair(qf: Tensor, kf: Tensor, v: Tensor, separable: bool) -> Tensor:
    """``Σ_d v_d tanh(qp_id + kp_jd)`` without a tanh: (B, H, bq, D), (B, H, bk, D) -> (B, H, bq, bk).

    ``separable``: qf = exp(2 qp) and kf = exp(2 kp) were taken once per token, so
    ``exp(2(qp_i + kp_j)) = qf_i kf_j`` costs one multiply per pair and feature;
    otherwise qf, kf are qp, kp and the exp is taken per pair.
    v: (D,) or per head (H, 1, 1, D).
    """
    return ((1 - 2 * _additive_r(qf, kf, separable)) * v).sum(-1)


def additive_pair_grads(
    qf: Tensor, kf: Tensor, v: Tensor, dpair: Tensor, separable: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Closed-form gradients of ``pair = Σ_d v_d t_ijd`` (t = tanh(qp_i + kp_j)) given dpair (B, H, bq, bk).

    ``∂t/∂x = 1 - t² = 4 r (1 - r)``; ``g = dpair_ij v 4 r (1 - r)``: dqp = Σ_j g,
    dkp = Σ_i g, dv = Σ_ij dpair_ij t (per head, (H, D); the caller sums a shared v).
    r is recomputed from qf, kf (see :func:`additive_pair`), so backward never stores a
    (bq, bk, D) tile.
    """
    r = _additive_r(qf, kf, separable)  # (B, H, bq, bk, D)
    dsv = dpair.unsqueeze(-1)  # (B, H, bq, bk, 1)
    g = dsv * v * (4 * r * (1 - r))  # (B, H, bq, bk, D)
    return g.sum(-2), g.sum(-3), (dsv * (1 - 2 * r)).sum((0, 2, 3))


def _additive_r(qf: Tensor, kf: Tensor, separable: bool) -> Tensor:
    """``r = 1 / (exp(2 (qp_i + kp_j)) + 1)``, (B, H, bq, bk, D); see :func:`additive_pair`."""
    if separable:
        return 1 / (qf.unsqueeze(-2) * kf.unsqueeze(-3) + 1)
    return 1 / (torch.exp(2 * (qf.unsqueeze(-2) + kf.unsqueeze(-3))) + 1)


def head_v(v: Tensor) -> Tensor:
    """Additive's v, (D,) or per head (H, D) -> broadcastable to (B, H, bq, bk, D)."""
    return v if v.dim() == 1 else v[:, None, None, :]  # (H, 1, 1, D)


def _sep_pair(qf: Tensor, kf: Tensor, v: Tensor) -> Tensor:
    return additive_pair(qf, kf, v, True)


def _exp_pair(qf: Tensor, kf: Tensor, v: Tensor) -> Tensor:
    return additive_pair(qf, kf, v, False)


def _sep_grads(qf: Tensor, kf: Tensor, v: Tensor, dpair: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return additive_pair_grads(qf, kf, v, dpair, True)


def _exp_grads(qf: Tensor, kf: Tensor, v: Tensor, dpair: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return additive_pair_grads(qf, kf, v, dpair, False)


def _exp2(x: Tensor) -> Tensor:
    """Per-token features of the separable form: exp(2 x)."""
    return torch.exp(2 * x)


class _Compiled:
    """torch.compile of the additive tile functions, built on first use; eager on failure."""

    def __init__(self) -> None:
        self.fns: dict[str, Any] = {}
        self.failed: str | None = None
        self.announced = False
        #: the C++ wrapper for single-threaded tiles (benchmarks/probe_additive_workers.py turns it off to compare)
        self.cpp_wrapper = True
        self._lock = threading.Lock()  # the tiles may start on several worker threads at once

    def announce(self) -> None:
        """Log :data:`COMPILE_NOTICE` at INFO, the first time a compiled tile runs in this process."""
        if self.announced:
            return
        with self._lock:
            if self.announced:
                return
            self.announced = True
        _log.info(COMPILE_NOTICE)

    def get(self, name: str, eager: Any, *, threads: int | None = None) -> Any:
        """``eager`` compiled (once per name and thread count); ``threads=1`` builds a kernel without an
        OpenMP region, for callers that run it on several threads at once (chunked's workers).

        A thread count also selects inductor's C++ wrapper (``cpp_wrapper``): its entry point releases
        the GIL for the whole call, where the default Python wrapper holds it, so two workers' tiles
        really run at once (with the Python wrapper they took turns: benchmarks/RESULTS.md)."""
        if self.failed is not None:
            return eager
        key = name if threads is None else f"{name}@{threads}"
        if key not in self.fns:
            options = None if threads is None else {"cpp.threads": threads, "cpp_wrapper": self.cpp_wrapper}
            try:
                self.fns[key] = torch.compile(eager, fullgraph=True, options=options)
            except Exception as e:  # noqa: BLE001  (no compiler on this machine: stay eager)
                self.failed = f"{type(e).__name__}: {e}"
                return eager
        compiled = self.fns[key]

        def call(*args: Tensor) -> Any:
            if self.failed is not None:
                return eager(*args)
            self.announce()
            try:
                return compiled(*args)
            except Exception as e:  # noqa: BLE001  (compilation happens at the first call)
                self.failed = f"{type(e).__name__}: {e}"
                return eager(*args)

        return call


#: the process's compiled tile functions (one compilation per function and shape)
COMPILED = _Compiled()


@dataclasses.dataclass(frozen=True)
class AdditiveTiles:
    """The closed-form pieces of one call: ``pre`` maps qp, kp to the per-token features the
    tiles read (exp(2x) for the separable form; None: the tiles read qp, kp), ``pair(qf, kf, v)``
    is the (B, H, bq, bk) tile and ``grads(qf, kf, v, dpair)`` its (dqp, dkp, dv); v comes
    through :func:`head_v`."""

    pre: Callable[[Tensor], Tensor] | None
    pair: Callable[[Tensor, Tensor, Tensor], Tensor]
    grads: Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]
    separable: bool

    def pairwise(self, qf: Tensor, kf: Tensor, v: Tensor) -> Tensor:
        """The tile with the score's ``pairwise(qp, kp, v)`` signature (v as the score holds it)."""
        return self.pair(qf, kf, head_v(v))


def additive_tiles(qp: Tensor, kp: Tensor, *, compiled: bool, threads: int | None = None) -> AdditiveTiles:
    """The tile functions for projected ``qp`` (B, H, L, D), ``kp`` (B, H, S, D): separable when
    :func:`separable_ok`, compiled (:data:`COMPILED`) when ``compiled``, for ``threads`` torch threads
    (None: the caller's; 1: tiles run side by side on single-threaded workers)."""
    sep = separable_ok(qp, kp)
    name = "sep" if sep else "exp"
    pair, grads = (_sep_pair, _sep_grads) if sep else (_exp_pair, _exp_grads)
    if compiled:
        pair = COMPILED.get(f"{name}_pair", pair, threads=threads)
        grads = COMPILED.get(f"{name}_grads", grads, threads=threads)
    return AdditiveTiles(pre=_exp2 if sep else None, pair=pair, grads=grads, separable=sep)
