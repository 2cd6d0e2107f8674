"""What :func:`attnkit.integrations.huggingface.record` keeps: the weights of chosen layers, heads and rows.

The weights are exact softmax weights ``w_ij = exp(s_ij - lse_i)``, rebuilt block by block from the
row log-sum-exp (Milakov & Gimelshein 2018, arXiv:1805.02867) by
:func:`attnkit.integrations.weights.exact_weights`, for the asked heads and query rows only: a
recording of 2 heads of 1 layer holds B·2·L·S numbers, never the B·H·L·S of every layer. When
the model also asked for every weight (``output_attentions=True``) the asked part is cut from
those instead of being recomputed.

Shape legend: B batch, H query heads, L queries, S keys; ``h`` heads kept, ``R`` rows kept.
"""

from __future__ import annotations

import contextvars
import dataclasses
from typing import Callable, Sequence

import torch
from torch import Tensor

from .weights import exact_weights

__all__ = ["Recording", "active_recording", "activate", "check_indices"]

_ACTIVE: contextvars.ContextVar["Recording | None"] = contextvars.ContextVar("attnkit_hf_recording", default=None)


def check_indices(name: str, given: object, count: int, *, what: str) -> list[int] | None:
    """``given`` (None, or a list of ints in [0, count)) as a sorted list without repeats; a ValueError
    names ``name``, what was given and the valid range otherwise."""
    if given is None:
        return None
    if isinstance(given, (int, str)) or not isinstance(given, Sequence):
        raise TypeError(f"{name} must be a list of {what} indices or None (all), got {given!r}")
    bad = [i for i in given if isinstance(i, bool) or not isinstance(i, int) or not (0 <= i < count)]
    if bad or not given:
        raise ValueError(
            f"{name}={list(given)!r} asks for {what}s that do not exist: the model has {count} {what}s, "
            f"valid indices are 0..{count - 1}; pass a non-empty list in that range or None for all"
        )
    return sorted(set(given))


@dataclasses.dataclass(eq=False)
class Recording:
    """The attention weights recorded inside one ``with record(model, ...) as rec:`` block.

    Attributes:
        layers: the layer indices recorded (all of the model's when none were asked).
        heads: layer index -> the query heads kept for it.
        rows: the query rows kept (None: every row).
        weights: layer index -> (B, h, R, S) float32 weights on the CPU, detached, of the
            layer's self-attention in the last forward made inside the block.
        cross_weights: the same for cross-attention layers (encoder-decoder models), when any ran.
        calls: layer index -> how many attention calls of that layer the block recorded (a
            ``generate`` loop calls each layer once per step; ``weights`` holds the last).
        seen: attention calls of any layer that reached attnkit inside the block.
    """

    layers: list[int]
    heads: dict[int, list[int]]
    rows: list[int] | None
    num_heads: int
    weights: dict[int, Tensor] = dataclasses.field(default_factory=dict)
    cross_weights: dict[int, Tensor] = dataclasses.field(default_factory=dict)
    calls: dict[int, int] = dataclasses.field(default_factory=dict)
    seen: int = 0
    _order: dict[int, int] = dataclasses.field(default_factory=dict, repr=False)

    def layer_of(self, module: torch.nn.Module) -> int:
        """The layer index of an attention module: its ``layer_idx`` (every model on the
        AttentionInterface sets it), else the order in which the block first called it."""
        idx = getattr(module, "layer_idx", None)
        if isinstance(idx, int) and not isinstance(idx, bool):
            return idx
        return self._order.setdefault(id(module), len(self._order))

    def capture(
        self,
        module: torch.nn.Module,
        query: Tensor,
        key: Tensor,
        *,
        mask: Tensor | None,
        causal: bool,
        scale: float | None,
        score_mod: Callable[..., Tensor] | None,
        weights: Tensor | None = None,
    ) -> None:
        """Keep the asked heads and rows of one call's weights (``weights``: all (B, H, L, S) of
        them when the model asked for them too, else they are rebuilt for the asked part only)."""
        self.seen += 1
        layer = self.layer_of(module)
        heads = self.heads.get(layer)
        if heads is None:
            return
        H, L = query.shape[1], query.shape[2]
        if heads[-1] >= H:
            raise ValueError(
                f"heads={heads!r} asks for heads that do not exist in layer {layer}: it has {H} heads, "
                f"valid indices are 0..{H - 1}"
            )
        rows = self.rows
        if rows is not None and rows[-1] >= L:
            raise ValueError(
                f"rows={rows!r} asks for query rows past the input: this call has L = {L} tokens, "
                f"valid rows are 0..{L - 1}; pass rows within the tokenised input or None for all"
            )
        if weights is not None:
            w = weights[:, heads]  # (B, h, L, S)
            if rows is not None:
                w = w[:, :, rows]  # (B, h, R, S)
        else:
            w = exact_weights(query, key, heads=heads, rows=rows, mask=mask, causal=causal, scale=scale,
                              score_mod=score_mod)  # (B, h, R, S)
        target = self.cross_weights if _is_cross(module) else self.weights
        target[layer] = w.detach().to(device="cpu", dtype=torch.float32)
        self.calls[layer] = self.calls.get(layer, 0) + 1


def _is_cross(module: torch.nn.Module) -> bool:
    return bool(getattr(module, "is_cross_attention", False)) or "Cross" in type(module).__name__


def active_recording() -> Recording | None:
    """The recording of the innermost ``record`` block running here (None outside one)."""
    return _ACTIVE.get()


class activate:
    """Make ``rec`` the active recording inside a ``with`` block (restores the previous one after)."""

    def __init__(self, rec: Recording) -> None:
        self.rec = rec
        self._token: contextvars.Token | None = None

    def __enter__(self) -> Recording:
        self._token = _ACTIVE.set(self.rec)
        return self.rec

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _ACTIVE.reset(self._token)
