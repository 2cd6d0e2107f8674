"""Hard (stochastic) attention: Xu et al. 2015, "Show, Attend and Tell" (arXiv:1502.03044);
Mnih et al. 2014, "Recurrent Models of Visual Attention" (arXiv:1406.6247).

``i_t ~ Categorical(softmax(score(h_t, k))),  c_t = v_{i_t}``, trained by REINFORCE
(Williams 1992): ``∇ E[R] ≈ (R - b) ∇ log p(i_t)``, with a baseline b and an entropy bonus.

Also the differentiable relaxations: straight-through argmax (Bengio et al.
2013, arXiv:1308.3432) and Gumbel-softmax (Jang et al. 2016, arXiv:1611.01144).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..core.normalize import Gumbel, get_normalizer
from ._common import attend, check_dim, decoder_attend, decoder_inputs
from .base import AttentionOutput
from .luong import LuongAttention
from .registry import register_mechanism

__all__ = ["HardAttention", "reinforce_loss", "MovingAverageBaseline", "LearnedBaseline", "HARD_MODES"]

HARD_MODES = ("sample", "argmax", "gumbel")
_PAPER = "Xu et al. 2015 (arXiv:1502.03044); Mnih et al. 2014 (arXiv:1406.6247)"


@register_mechanism("hard", "hard-sample", "stochastic", "reinforce", paper=_PAPER,
                    formula="i_t ~ softmax(score(h_t, k)); c_t = v_{i_t}; ∇ ≈ (R - b) ∇ log p(i_t)",
                    defaults={"mode": "sample"})
@register_mechanism("hard-argmax", "straight-through", paper="Bengio, Léonard & Courville 2013 (arXiv:1308.3432)",
                    formula="c_t = v_{argmax score}; backward through softmax(score)", defaults={"mode": "argmax"})
@register_mechanism("gumbel", "gumbel-softmax", paper="Jang, Gu & Poole 2016 (arXiv:1611.01144)",
                    formula="w = softmax((score + g)/τ), g ~ Gumbel(0, 1); hard: one-hot, soft gradient",
                    defaults={"mode": "gumbel"})
class HardAttention(nn.Module):
    """Attention that picks one position.

    Args:
        query_dim: features of the query, as in :class:`LuongAttention`.
        key_dim: features of the keys, as in :class:`LuongAttention`.
        value_dim: features of the values, as in :class:`LuongAttention`.
        mode: "sample" (REINFORCE: one position drawn from softmax(score),
            its log-probability returned as ``log_prob``), "argmax"
            (straight-through) or "gumbel" (Gumbel-softmax).
        score: the alignment score, "general" (default), "dot" or "concat".
        tau: Gumbel-softmax temperature.
        hard: Gumbel-softmax: one-hot forward with the soft gradient (default)
            or the soft relaxation itself.
        stochastic_eval: keep sampling in eval mode; by default eval mode
            picks the argmax ("sample" and "gumbel").

    ``forward(query, keys, values=None, *, key_allowed=None, ..., generator=None)``:
    ``key_allowed`` (B, S) bool, True = the key may be picked (a real token),
    False = padding (torch's ``key_padding_mask`` is its negation); draws with
    ``generator`` when given.
    Returns AttentionOutput(context = the chosen value, weights = one-hot,
    log_prob (B, [L]) of the drawn position for "sample"/"gumbel" in training).
    """

    def __init__(
        self,
        query_dim: int,
        *,
        key_dim: Optional[int] = None,
        value_dim: Optional[int] = None,
        mode: str = "sample",
        score: str = "general",
        tau: float = 1.0,
        hard: bool = True,
        stochastic_eval: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if mode not in HARD_MODES:
            raise ValueError(f"mode must be one of {HARD_MODES}, got {mode!r}")
        if score not in ("dot", "general", "concat"):
            raise ValueError(f"score must be 'dot', 'general' or 'concat', got {score!r}")
        self.align = LuongAttention(query_dim, key_dim=key_dim, value_dim=value_dim, mode=score,
                                    device=device, dtype=dtype)
        self.query_dim, self.key_dim, self.value_dim = query_dim, self.align.key_dim, self.align.value_dim
        self.output_dim = self.value_dim
        self.mode = mode
        self._gumbel = Gumbel(tau, hard)
        self.stochastic_eval = bool(stochastic_eval)

    def _normalizer(self):
        if self.mode == "argmax" or (not self.training and not self.stochastic_eval):
            return "argmax"
        return "sample" if self.mode == "sample" else self._gumbel

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Optional[Tensor] = None,
        *,
        key_allowed: Optional[Tensor] = None,
        step: Optional[int] = None,
        state: Any = None,
        need_weights: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> AttentionOutput:
        di = decoder_inputs(
            "HardAttention", query, keys, values, key_allowed,
            query_dim=self.query_dim, key_dim=self.key_dim, value_dim=self.value_dim,
        )
        norm = self._normalizer()
        ctx, w, lp = decoder_attend(
            di, score=self.align.score(), normalizer=get_normalizer(norm), need_weights=need_weights,
            generator=generator,
        )
        return AttentionOutput(ctx, w, lp, None)

    def entropy(self, query: Tensor, keys: Tensor, *, key_allowed: Optional[Tensor] = None) -> Tensor:
        """Entropy ``-Σ p log p`` (B, [L]) of the distribution the positions are drawn from
        (``key_allowed`` (B, S) bool, True = may be picked)."""
        di = decoder_inputs(
            "HardAttention", query, keys, None, key_allowed, query_dim=self.query_dim, key_dim=self.key_dim,
        )
        _, p = attend(di.query, di.keys, di.keys, score=self.align.score(), mask=di.mask, return_weights=True)
        h = -(torch.where(p > 0, p * torch.log(p.clamp_min(1e-30)), torch.zeros_like(p))).sum(-1)  # (B, L)
        return h.squeeze(1) if di.squeeze else h

    def extra_repr(self) -> str:
        return f"{self.query_dim}, mode={self.mode!r}, score={self.align.mode!r}"


class MovingAverageBaseline(nn.Module):
    """b ← m·b + (1 - m)·mean(R): a running mean of the reward (a buffer, no gradient).

    ``forward(reward)`` returns the current baseline (before this batch, so it
    does not depend on its own reward) and, in training mode, updates it.
    """

    def __init__(self, momentum: float = 0.9, *, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if not (0.0 <= momentum < 1.0):
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.register_buffer("value", torch.zeros((), device=device, dtype=dtype or torch.float32))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool, device=device))

    def forward(self, reward: Tensor) -> Tensor:
        r = reward.detach().to(self.value.dtype).mean()
        b = torch.where(self.initialised, self.value, r)
        if self.training:
            with torch.no_grad():
                self.value.copy_(self.momentum * b + (1 - self.momentum) * r)
                self.initialised.fill_(True)
        return b.expand_as(reward).to(reward.dtype)


class LearnedBaseline(nn.Module):
    """b(h) = wᵀ h + c, a learned reward predictor (Mnih et al. 2014), fit by (R - b)² in
    :func:`reinforce_loss`. ``forward(features (..., dim)) -> (...)``."""

    def __init__(self, dim: int, *, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        check_dim(dim, "dim")
        self.linear = nn.Linear(dim, 1, device=device, dtype=dtype)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(features).squeeze(-1)


def reinforce_loss(
    log_prob: Tensor,
    reward: Tensor,
    baseline: Optional[Tensor] = None,
    *,
    entropy: Optional[Tensor] = None,
    entropy_weight: float = 0.0,
    baseline_weight: float = 1.0,
) -> Tensor:
    """REINFORCE (Williams 1992) loss for hard attention, to minimise.

    ``loss = -mean((R - b) · Σ_t log p_t) - λ_H · mean(H) + λ_b · mean((R - b)²)``

    Args:
        log_prob: log p of the drawn positions, (B,) or (B, T) (summed over T:
            the log-probability of the whole trajectory) or the same shape as reward.
        reward: R, (B,) per sequence or the shape of ``log_prob``.
        baseline: b with reward's shape (a :class:`MovingAverageBaseline`
            or :class:`LearnedBaseline` output), or None (b = 0). The
            advantage R - b is detached; a baseline with a gradient is fit
            by the squared error term.
        entropy: entropy of the attention distribution (HardAttention.entropy);
            ``entropy_weight`` > 0 rewards exploration.
    """
    if not isinstance(log_prob, Tensor) or not isinstance(reward, Tensor):
        raise TypeError("log_prob and reward must be tensors")
    reward = reward.to(log_prob.dtype)
    lp = log_prob
    while lp.dim() > reward.dim():
        lp = lp.sum(-1)  # (B, T) -> (B,): the trajectory's log-probability
    if lp.shape != reward.shape:
        raise ValueError(
            f"log_prob {tuple(log_prob.shape)} and reward {tuple(reward.shape)} do not match; pass one reward "
            "per sequence (B,) or one per step with log_prob's shape"
        )
    b = torch.zeros_like(reward) if baseline is None else baseline
    if b.shape != reward.shape:
        raise ValueError(f"baseline has shape {tuple(b.shape)}; expected reward's shape {tuple(reward.shape)}")
    advantage = (reward - b).detach()
    loss = -(advantage * lp).mean()
    if b.requires_grad:
        loss = loss + baseline_weight * (reward.detach() - b).square().mean()
    if entropy is not None and entropy_weight:
        loss = loss - entropy_weight * entropy.mean()
    return loss
