"""Normalizers: scores (..., S) -> attention weights over the S keys.

Forbidden keys arrive as -inf scores. A row with no allowed key gives weights
0 (and log-probability 0), with finite zero gradients: never NaN.

* [softmax] ``w = exp(s - m) / Σ exp(s - m)``, float32 inside for half inputs.
* [sparsemax] Martins & Astudillo 2016 (arXiv:1602.02068):
  ``w = argmin_{p ∈ Δ} |p - s|²`` = ``max(s - τ, 0)``.
* [entmax15] Peters, Niculae & Martins 2019 (arXiv:1905.05702), α = 1.5:
  ``w = max(s/2 - τ, 0)²``.
* [argmax] hard attention, one-hot forward, softmax gradient backward
  (straight-through, Bengio et al. 2013, arXiv:1308.3432).
* [sample] stochastic hard attention (Xu et al. 2015, arXiv:1502.03044;
  Mnih et al. 2014, arXiv:1406.6247): one key drawn from softmax(s), returned
  one-hot, with its log-probability ``log p = s_i - logsumexp(s)`` for REINFORCE
  (Williams 1992): ``∇ E[R] = E[(R - b) ∇ log p]``.
* [gumbel] Gumbel-softmax (Jang et al. 2016, arXiv:1611.01144; Maddison et al.
  2016, arXiv:1611.00712): ``w = softmax((s + g) / τ)``, g ~ Gumbel(0, 1);
  ``hard=True`` gives the one-hot of its argmax with the soft gradient.

Register your own with ``@register_normalizer("name")`` on a subclass of
:class:`Normalizer`.
"""

from __future__ import annotations

import abc
from typing import Callable, ClassVar

import torch
from torch import Tensor

from .registry import Registry

__all__ = [
    "Normalizer",
    "Softmax",
    "Sparsemax",
    "Entmax15",
    "Argmax",
    "Sample",
    "Gumbel",
    "NORMALIZERS",
    "register_normalizer",
    "get_normalizer",
    "normalizer_names",
    "safe_softmax",
    "logsumexp_safe",
]

#: normalizer name (aliases included) -> Normalizer subclass
NORMALIZERS: Registry[type["Normalizer"]] = Registry("normalizer")


def register_normalizer(*names: str) -> Callable[[type["Normalizer"]], type["Normalizer"]]:
    """Class decorator: register a :class:`Normalizer` subclass under ``names`` (the first is its ``name``)."""

    def deco(cls: type[Normalizer]) -> type[Normalizer]:
        NORMALIZERS.add(names[0], cls, *names[1:])
        cls.name = names[0]
        return cls

    return deco


def normalizer_names() -> list[str]:
    return sorted(NORMALIZERS)


def _row_max(s: Tensor) -> Tensor:
    """Row max over the last dim, 0 for rows that are all -inf, no gradient."""
    m = s.detach().amax(dim=-1, keepdim=True)
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def logsumexp_safe(s: Tensor) -> Tensor:
    """logsumexp over the last dim; -inf for a row of -inf, with zero gradients (never NaN)."""
    m = _row_max(s)
    z = torch.exp(s - m).sum(-1, keepdim=True)
    some = z > 0
    # log of 1, not of 0, on an empty row: log's backward 0 / 0 would be NaN there, and would reach
    # the scores through a float (-inf) mask, which adds instead of cutting the gradient
    lse = m + torch.log(torch.where(some, z, torch.ones_like(z)))
    return torch.where(some, lse, torch.full_like(lse, float("-inf"))).squeeze(-1)


def safe_softmax(s: Tensor) -> Tensor:
    """Softmax over the last dim; an all -inf row gives zeros and zero gradients."""
    m = _row_max(s)
    e = torch.exp(s - m)
    z = e.sum(-1, keepdim=True)
    return e / torch.where(z > 0, z, torch.ones_like(z))


def _any_allowed(s: Tensor) -> Tensor:
    return torch.isfinite(s).any(-1, keepdim=True)  # (..., 1)


class Normalizer(abc.ABC):
    """Base class. ``__call__(scores, generator=None) -> (weights, log_prob | None)``."""

    name: ClassVar[str] = "normalizer"
    #: draws random numbers; returns a log-probability of what it drew.
    stochastic: ClassVar[bool] = False
    #: the weights are exp(s - lse) (fused kernels can run it and rebuild weights).
    is_softmax: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, scores: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """Weights (..., S) and, for stochastic normalizers, log p of the draw (...)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@register_normalizer("softmax")
class Softmax(Normalizer):
    """``w = exp(s - max) / Σ exp(s - max)``; float32 inside for half inputs."""

    is_softmax = True

    def __call__(self, scores, *, generator=None):
        return safe_softmax(scores), None


@register_normalizer("sparsemax")
class Sparsemax(Normalizer):
    """Martins & Astudillo 2016 (arXiv:1602.02068): ``w = max(s - τ, 0)``, Σ w = 1.

    Jacobian ``diag(u) - u uᵀ / |u|``, u the indicator of s > τ (an entry at τ is a zero); values and
    gradients match the reference ``entmax.sparsemax`` (tests/functional/test_normalizer_reference.py).
    """

    def __call__(self, scores, *, generator=None):
        s = scores - _row_max(scores)
        srt, _ = torch.sort(s, dim=-1, descending=True)
        fin = torch.isfinite(srt)
        srt0 = torch.where(fin, srt, torch.zeros_like(srt))
        k = torch.arange(1, s.shape[-1] + 1, device=s.device, dtype=s.dtype)
        csum = srt0.cumsum(-1)
        support = fin & (1 + k * srt0 > csum)
        k_z = support.sum(-1, keepdim=True)  # (..., 1) support size, 0 for empty rows
        idx = (k_z - 1).clamp_min(0)
        tau = (csum.gather(-1, idx) - 1) / k_z.clamp_min(1).to(s.dtype)
        xf = torch.where(torch.isfinite(s), s, torch.full_like(s, -1e30))
        # only entries strictly above τ move with s: one sitting exactly at τ (s = [1, 0]) is a zero
        # of the output and gets the zero entry's Jacobian row, as in the reference (clamp(min=0)
        # would pass its gradient through and shift τ by it)
        w = torch.where(xf > tau, xf - tau, torch.zeros_like(xf))
        return torch.where(k_z > 0, w, torch.zeros_like(w)), None


@register_normalizer("entmax15", "entmax")
class Entmax15(Normalizer):
    """Peters et al. 2019 (arXiv:1905.05702) 1.5-entmax: ``w = max(s/2 - τ, 0)²``, Σ w = 1.

    Exact sort-based τ (their Algorithm 2); values and gradients match the reference
    ``entmax.entmax15``, whose Jacobian (in s) is ``diag(r) - r rᵀ / Σ r`` with r = √w.
    """

    def __call__(self, scores, *, generator=None):
        x = (scores - _row_max(scores)) / 2
        srt, _ = torch.sort(x, dim=-1, descending=True)
        fin = torch.isfinite(srt)
        srt0 = torch.where(fin, srt, torch.zeros_like(srt))
        rho = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
        mean = srt0.cumsum(-1) / rho
        mean_sq = (srt0 * srt0).cumsum(-1) / rho
        ss = rho * (mean_sq - mean * mean)
        delta = (1 - ss) / rho
        # sqrt has an infinite slope at 0: where δ is exactly 0 (ties, integer scores: x = [0, 0, -1, -1]
        # at ρ = 4) the gather's zero gradient times it is 0·∞ = NaN. δ > 0 at the support size, so the
        # positions with δ = 0 never give τ* and their gradient is 0 (δ = 0 at the support size would make
        # its entries all equal to the mean, and then δ = 1/ρ).
        pos = delta > 0
        root = torch.where(pos, torch.sqrt(torch.where(pos, delta, torch.ones_like(delta))), torch.zeros_like(delta))
        tau = mean - root
        support = fin & (tau <= srt0)
        size = support.sum(-1, keepdim=True)
        tau_star = tau.gather(-1, (size - 1).clamp_min(0))
        xf = torch.where(torch.isfinite(x), x, torch.full_like(x, -1e30))
        w = torch.clamp(xf - tau_star, min=0) ** 2
        return torch.where(size > 0, w, torch.zeros_like(w)), None


def _one_hot_argmax(s: Tensor) -> Tensor:
    idx = s.argmax(-1, keepdim=True)
    hard = torch.zeros_like(s).scatter_(-1, idx, 1.0)
    return torch.where(_any_allowed(s), hard, torch.zeros_like(hard))


@register_normalizer("argmax", "hard", "straight_through")
class Argmax(Normalizer):
    """One-hot at the best key forward; the softmax gradient backward (straight-through)."""

    def __call__(self, scores, *, generator=None):
        soft = safe_softmax(scores)
        hard = _one_hot_argmax(scores.detach())
        return hard + soft - soft.detach(), None


def _gumbel_noise(s: Tensor, generator: torch.Generator | None) -> Tensor:
    # uniforms drawn in float32 whatever the dtype, so one seed gives the same draw in
    # float32 and float64 (the oracle), then clamped away from 0 and 1
    u = torch.rand(s.shape, generator=generator, device=s.device, dtype=torch.float32)
    u = u.clamp(torch.finfo(torch.float32).tiny, 1.0 - 1e-7).to(s.dtype)
    return -torch.log(-torch.log(u))


def _log_prob_of(scores: Tensor, onehot: Tensor) -> Tensor:
    """log softmax(scores) at the one-hot choice; 0 for empty rows. (..., S) -> (...)."""
    lse = logsumexp_safe(scores).unsqueeze(-1)
    logp = torch.where(torch.isfinite(scores), scores - torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse)),
                       torch.zeros_like(scores))
    return (logp * onehot.detach()).sum(-1)


@register_normalizer("sample", "categorical", "reinforce")
class Sample(Normalizer):
    """One key drawn from softmax(s) (Gumbel-max trick), one-hot, and its log-probability.

    The weights carry no gradient; train the scores with REINFORCE on the
    returned ``log_prob`` (see ``attnkit.nn.reinforce_loss``).
    """

    stochastic = True

    def __call__(self, scores, *, generator=None):
        noisy = scores.detach() + _gumbel_noise(scores, generator)
        hard = _one_hot_argmax(noisy)
        return hard, _log_prob_of(scores, hard)


@register_normalizer("gumbel", "gumbel_softmax")
class Gumbel(Normalizer):
    """Gumbel-softmax: ``softmax((s + g) / τ)``; ``hard=True``: straight-through one-hot."""

    stochastic = True

    def __init__(self, tau: float = 1.0, hard: bool = False) -> None:
        if not (isinstance(tau, (int, float)) and tau > 0):
            raise ValueError(f"tau (temperature) must be > 0, got {tau!r}")
        self.tau = float(tau)
        self.hard = bool(hard)

    def __call__(self, scores, *, generator=None):
        z = (scores + _gumbel_noise(scores, generator)) / self.tau
        y = safe_softmax(z)
        # the argmax of z, not of y: an empty row keeps its -inf in z (no choice, weights 0), while
        # its y is all 0, whose argmax would pick key 0
        choice = _one_hot_argmax(z.detach())
        w = choice + y - y.detach() if self.hard else y
        return w, _log_prob_of(scores, choice)

    def __repr__(self) -> str:
        return f"Gumbel(tau={self.tau}, hard={self.hard})"


def get_normalizer(normalizer: str | Normalizer, **params: object) -> Normalizer:
    if isinstance(normalizer, Normalizer):
        if params:
            raise ValueError("normalizer is already an instance; pass its options to its constructor")
        return normalizer
    if not isinstance(normalizer, str):
        raise TypeError(f"normalizer must be a name or a Normalizer, got {type(normalizer).__name__}")
    return NORMALIZERS.get(normalizer)(**params)  # type: ignore[arg-type]
