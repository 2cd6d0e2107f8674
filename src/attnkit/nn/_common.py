"""Helpers shared by the modules of :mod:`attnkit.nn` (not public API).

* :func:`attend`: the one call every module makes into
  :func:`attnkit.functional.attention`. Inside :func:`record_specs` it also
  records the validated :class:`~attnkit.core.spec.AttentionSpec`, so
  ``attnkit list`` can ask every backend whether it could run a mechanism's
  real call (``not_supported_reasons``) instead of guessing.
* :func:`decoder_inputs`: validation and shaping of the decoder-style call
  ``forward(query, keys, values=None, *, key_allowed=None, ...)``.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, NamedTuple, Optional

import torch
from torch import Tensor

from ..core.normalize import Normalizer, get_normalizer
from ..core.spec import AttentionSpec
from ..functional import attention, build_spec

__all__ = ["attend", "record_specs", "decoder_inputs", "DecoderInputs", "shape_str", "check_dim"]

_RECORDER: contextvars.ContextVar[Optional[list]] = contextvars.ContextVar("attnkit_nn_specs", default=None)


@contextlib.contextmanager
def record_specs() -> Iterator[list[AttentionSpec]]:
    """Collect the spec of every :func:`attend` call made inside the block."""
    specs: list[AttentionSpec] = []
    token = _RECORDER.set(specs)
    try:
        yield specs
    finally:
        _RECORDER.reset(token)


def attend(query: Tensor, key: Tensor, value: Tensor, **kwargs: Any):
    """:func:`attnkit.functional.attention` (recording the spec when asked)."""
    rec = _RECORDER.get()
    if rec is not None:
        kw = {k: v for k, v in kwargs.items() if k != "backend"}
        rec.append(build_spec(query, key, value, **kw))
    return attention(query, key, value, **kwargs)


def shape_str(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_dim(value: Any, name: str, *, allow_none: bool = False) -> None:
    """Raise unless ``value`` is a positive int (a feature size)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class DecoderInputs(NamedTuple):
    query: Tensor  # (B, L, Dq)
    keys: Tensor  # (B, S, Dk)
    values: Tensor  # (B, S, Dv)
    mask: Optional[Tensor]  # (B, 1, 1, S) bool, True = attend, or None
    squeeze: bool  # the query came in as (B, Dq): squeeze L from the outputs


def decoder_inputs(
    module: str,
    query: Tensor,
    keys: Tensor,
    values: Optional[Tensor],
    key_allowed: Optional[Tensor],
    *,
    query_dim: int,
    key_dim: int,
    value_dim: Optional[int] = None,
) -> DecoderInputs:
    """Check the decoder-style inputs and bring them to 3-D.

    query (B, L, Dq) or one step (B, Dq); keys (B, S, Dk); values (B, S, Dv)
    default to keys; key_allowed (B, S) bool, True = the key may be attended (a
    real token), False = ignored (padding); torch's ``key_padding_mask`` is its
    negation.
    """
    for name, t in (("query", query), ("keys", keys)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{module}: {name} must be a torch.Tensor, got {type(t).__name__}")
    squeeze = query.dim() == 2
    if squeeze:
        query = query.unsqueeze(1)  # (B, 1, Dq)
    if query.dim() != 3:
        raise ValueError(
            f"{module}: query has shape {shape_str(query)}; expected (B, L, {query_dim}) or (B, {query_dim})"
        )
    if query.shape[-1] != query_dim:
        raise ValueError(
            f"{module}: query has {query.shape[-1]} features but the layer was built with query_dim={query_dim}; "
            f"build it with query_dim={query.shape[-1]}"
        )
    if keys.dim() != 3:
        raise ValueError(f"{module}: keys has shape {shape_str(keys)}; expected (B, S, {key_dim})")
    if keys.shape[-1] != key_dim:
        raise ValueError(
            f"{module}: keys have {keys.shape[-1]} features but the layer was built with key_dim={key_dim}; "
            f"build it with key_dim={keys.shape[-1]}"
        )
    if keys.shape[0] != query.shape[0]:
        raise ValueError(f"{module}: query has batch {query.shape[0]} but keys have batch {keys.shape[0]}")
    if values is None:
        values = keys
    elif not isinstance(values, Tensor) or values.dim() != 3 or values.shape[:2] != keys.shape[:2]:
        got = shape_str(values) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(
            f"{module}: values has shape {got}; expected (B, S, Dv) = ({keys.shape[0]}, {keys.shape[1]}, Dv)"
        )
    if value_dim is not None and values.shape[-1] != value_dim:
        raise ValueError(
            f"{module}: values have {values.shape[-1]} features but the layer was built with value_dim={value_dim}; "
            f"build it with value_dim={values.shape[-1]}"
        )
    mask = None
    if key_allowed is not None:
        ka = key_allowed
        if not isinstance(ka, Tensor) or ka.dtype != torch.bool or ka.shape != keys.shape[:2]:
            got = f"{ka.dtype} {shape_str(ka)}" if isinstance(ka, Tensor) else type(ka).__name__
            raise ValueError(
                f"{module}: key_allowed must be a bool tensor of shape (B, S) = ({keys.shape[0]}, {keys.shape[1]}), "
                f"True at the keys that may be attended (a torch key_padding_mask is its negation); got {got}"
            )
        mask = key_allowed[:, None, None, :]  # (B, 1, 1, S): broadcasts over heads and the L queries
    return DecoderInputs(query, keys, values, mask, squeeze)


def squeeze_step(t: Optional[Tensor], squeeze: bool) -> Optional[Tensor]:
    """Drop the L axis (dim 1) again when the query came in as one step (B, Dq)."""
    if t is None or not squeeze:
        return t
    return t.squeeze(1)  # (B, 1, ...) -> (B, ...)


def check_normalizer(normalizer: Any, normalizer_params: Optional[dict] = None) -> Normalizer:
    """Validate a normalizer name (or instance) at construction; returns the instance."""
    return get_normalizer(normalizer, **dict(normalizer_params or {}))


def check_dropout(dropout: Any) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not (0.0 <= dropout < 1.0):
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    return float(dropout)


def decoder_attend(
    di: DecoderInputs,
    *,
    score: Any,
    normalizer: Any,
    need_weights: bool,
    dropout_p: float = 0.0,
    mask: Optional[Tensor] = None,
    **kwargs: Any,
):
    """One-head attention of a decoder-style mechanism.

    Returns ``(context (B, L, Dv), weights (B, L, S) | None, log_prob (B, L) | None)``
    with L squeezed again for one-step (B, Dq) queries. Weights are requested
    only when asked for, so fused backends can take the call.
    """
    stochastic = bool(getattr(normalizer, "stochastic", False))
    res = attend(
        di.query,
        di.keys,
        di.values,
        score=score,
        normalizer=normalizer,
        mask=di.mask if mask is None else mask,
        dropout_p=dropout_p,
        return_weights=need_weights,
        return_log_prob=stochastic,
        **kwargs,
    )
    res = res if isinstance(res, tuple) else (res,)
    ctx = res[0]
    w = res[1] if need_weights else None
    lp = res[-1] if stochastic else None
    return squeeze_step(ctx, di.squeeze), squeeze_step(w, di.squeeze), squeeze_step(lp, di.squeeze)
