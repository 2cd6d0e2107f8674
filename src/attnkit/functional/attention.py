"""``attention()``: the one entry point. Validates (:func:`build_spec`), then dispatches to a backend.

``output = normalize(scale · score(q, k) + bias, mask) @ v``

Shape legend: B batch, H heads, L target (queries), S source (keys),
E query/key features, Ev value features.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import Tensor

from ..backends.dispatch import allowed_backends, select_backend
from ..backends.sdpa import SDPABackend
from ..core.masks import CAUSAL_ALIGNMENTS
from ..core.normalize import Normalizer, Softmax, get_normalizer
from ..core.reference import no_keys
from ..core.scores import ScaledDot, Score, get_score
from ..core.spec import AttentionResult, AttentionSpec, MaskMod, ScoreMod

__all__ = ["attention", "build_spec"]


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))  # (2, 3), (3,), ()


def _check_tensors(query: Any, key: Any, value: Any) -> None:
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() not in (3, 4):
            raise ValueError(
                f"{name} has shape {_shape(t)}; expected (B, H, N, E) or (B, N, E) for a single head"
            )
        if not t.is_floating_point():
            raise TypeError(f"{name} has dtype {t.dtype}; attention needs floating point, e.g. {name}.float()")
    if not (query.dim() == key.dim() == value.dim()):
        raise ValueError(
            f"query, key and value must all be 3-D or all 4-D; got {_shape(query)}, {_shape(key)}, {_shape(value)}"
        )
    if not (query.dtype == key.dtype == value.dtype):
        raise TypeError(
            f"query, key and value dtypes differ ({query.dtype}, {key.dtype}, {value.dtype}); "
            "cast them to one dtype, e.g. key.to(query.dtype)"
        )
    if not (query.device == key.device == value.device):
        raise ValueError(
            f"query, key and value are on different devices ({query.device}, {key.device}, {value.device}); "
            "move them with .to(query.device)"
        )


def _check_finite(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, sc: Score) -> None:
    """``check_finite=True``: raise naming the first input that holds NaN or inf (a float mask may
    hold -inf, which forbids a key, but not NaN or +inf)."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf; fix the inputs or pass check_finite=False")
    if mask is not None and mask.is_floating_point() and bool((mask.isnan() | (mask == float("inf"))).any()):
        raise ValueError(
            "mask contains NaN or +inf; a float mask is added to the scores (-inf forbids a key): "
            "fix the mask or pass check_finite=False"
        )
    for name, t in vars(sc).items():  # every tensor the score holds: w_q, w_k, v, bias, weight, beta, ...
        if isinstance(t, Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(
                f"score parameter {name!r} of the {sc.name!r} score contains NaN or inf; fix it or pass "
                "check_finite=False"
            )


def build_spec(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    score: str | Score = "scaled_dot",
    score_params: Mapping[str, Any] | None = None,
    normalizer: str | Normalizer = "softmax",
    normalizer_params: Mapping[str, Any] | None = None,
    mask: Tensor | None = None,
    causal: bool | str = False,
    score_mod: ScoreMod | None = None,
    mask_mod: MaskMod | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    generator: torch.Generator | None = None,
    return_weights: bool = False,
    return_log_prob: bool = False,
    check_finite: bool = False,
) -> AttentionSpec:
    """Validate the arguments of :func:`attention` and return its 4-D spec."""
    _check_tensors(query, key, value)
    if query.dim() == 3:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)  # (B, 1, N, E)
    B, H, L, _ = query.shape
    Bk, Hk, S, _ = key.shape
    if key.shape[:3] != value.shape[:3]:
        raise ValueError(
            f"key {_shape(key)} and value {_shape(value)} must agree on (B, H, S); "
            "every key needs exactly one value"
        )
    if Bk != B:
        raise ValueError(f"query has batch {B} but key has batch {Bk}; pass the same batch size")
    if Hk == 0 or H % Hk != 0:
        raise ValueError(
            f"query has {H} heads and key/value have {Hk}; the key heads must divide the query heads "
            "(grouped-query attention) or equal them"
        )

    sc = get_score(score, **dict(score_params or {}))
    sc.check(query, key)
    norm = get_normalizer(normalizer, **dict(normalizer_params or {}))

    if scale is None:
        scale_f = sc.default_scale(query, key)
    else:
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale):
            raise ValueError(f"scale must be a finite number or None (the score's default), got {scale!r}")
        scale_f = float(scale)

    if mask is not None:
        if not isinstance(mask, Tensor):
            raise TypeError(f"mask must be a bool or float Tensor, got {type(mask).__name__}")
        if mask.dtype != torch.bool and not mask.is_floating_point():
            raise TypeError(
                f"mask has dtype {mask.dtype}; pass a bool mask (True = attend) or a float mask added to "
                "the scores, e.g. mask.bool()"
            )
        if mask.device != query.device:
            raise ValueError(f"mask is on {mask.device} but query is on {query.device}; move it with .to()")
        # broadcasts to (B, H, L, S) exactly: each trailing size 1 or equal (torch.broadcast_shapes, at a
        # fraction of its cost on every masked call)
        if mask.dim() > 4 or any(m != 1 and m != t for m, t in zip(reversed(mask.shape), (S, L, H, B))):
            raise ValueError(
                f"mask has shape {_shape(mask)}, which does not broadcast to (B, H, L, S) = "
                f"({B}, {H}, {L}, {S}); use (S,) for one key mask, (L, S), (B, 1, 1, S) for key padding "
                "or (B, H, L, S)"
            )
        mask = mask[(None,) * (4 - mask.dim())]  # a view with leading 1s: every backend reads 4-D

    if causal is True:
        causal_s: str | None = "top_left"
    elif causal is False or causal is None:
        causal_s = None
    elif isinstance(causal, str) and causal in CAUSAL_ALIGNMENTS:
        causal_s = causal
    else:
        raise ValueError(f"causal must be True, False, 'top_left' or 'bottom_right', got {causal!r}")
    if causal_s == "bottom_right" and S < L:
        raise ValueError(
            f"causal='bottom_right' places the {L} queries at the end of the {S} keys and needs S >= L; "
            "use causal='top_left'"
        )

    if not isinstance(dropout_p, (int, float)) or not (0.0 <= dropout_p < 1.0):
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p!r}")
    if return_log_prob and not norm.stochastic:
        raise ValueError(
            f"return_log_prob=True needs a stochastic normalizer ('sample' or 'gumbel'), got {norm.name!r}"
        )
    for name, fn in (("score_mod", score_mod), ("mask_mod", mask_mod)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    if check_finite:
        _check_finite(query, key, value, mask, sc)

    return AttentionSpec(
        query=query,
        key=key,
        value=value,
        score=sc,
        normalizer=norm,
        scale=scale_f,
        mask=mask,
        causal=causal_s,
        score_mod=score_mod,
        mask_mod=mask_mod,
        dropout_p=float(dropout_p),
        generator=generator,
        return_weights=bool(return_weights),
        return_log_prob=bool(return_log_prob),
    )


def attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    score: str | Score = "scaled_dot",
    score_params: Mapping[str, Any] | None = None,
    normalizer: str | Normalizer = "softmax",
    normalizer_params: Mapping[str, Any] | None = None,
    mask: Tensor | None = None,
    causal: bool | str = False,
    score_mod: ScoreMod | None = None,
    mask_mod: MaskMod | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    generator: torch.Generator | None = None,
    return_weights: bool = False,
    return_log_prob: bool = False,
    check_finite: bool = False,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, ...]:
    """Attention of queries over keys: ``normalize(scale · score(q, k) + bias, mask) @ v``.

    Shapes: query (B, H, L, E), key (B, Hk, S, Ek), value (B, Hk, S, Ev) ->
    output (B, H, L, Ev); 3-D inputs (B, N, E) mean one head and give
    (B, L, Ev). Hk may divide H (grouped-query attention).

    Args:
        score: a registry name ("scaled_dot" default, "dot", "general",
            "additive", "cosine", "location", ...) or a
            :class:`~attnkit.core.scores.Score` instance. Parameters of
            named scores go in ``score_params`` (e.g. ``{"weight": W}``).
        normalizer: "softmax" (default), "sparsemax", "entmax15", "argmax",
            "sample", "gumbel" or a Normalizer instance (options in
            ``normalizer_params``, e.g. ``{"tau": 0.5, "hard": True}``).
        mask: bool (True = attend) or float (added to the scores), broadcastable
            to (B, H, L, S) as in torch SDPA: (S,) is one key mask for every batch,
            head and query, a 0-d mask applies everywhere, (B, 1, 1, S) is key padding.
        causal: True / "top_left" (query i sees keys j <= i), or
            "bottom_right" (queries are the last L of S positions: cached decoding).
        score_mod: ``score_mod(score, b, h, q_idx, kv_idx)`` (FlexAttention's
            convention), applied to the scaled scores with broadcast index grids.
        mask_mod: ``mask_mod(b, h, q_idx, kv_idx) -> bool`` (True = attend).
        scale: multiplies the score; None takes the score's default (1/sqrt(E)
            for scaled_dot, 1 otherwise).
        dropout_p: dropout on the weights that multiply V (returned weights are
            before dropout).
        return_weights: also return the (B, H, L, S) weights.
        return_log_prob: also return log p (B, H, L) of the keys drawn by a
            stochastic normalizer (REINFORCE).
        check_finite: raise a ValueError naming the input if query, key, value,
            a tensor of the score (e.g. ``w_q``) holds NaN or inf, or a float mask
            holds NaN or +inf (-inf forbids a key and is allowed).
        backend: "auto" or a backend name (see ``attnkit info``).

    Returns:
        ``output``, or a tuple ``(output, [weights], [log_prob])`` in that
        order with the parts asked for.

    Edge rules, the same on every backend:

    * A query row with no allowed key gets output 0, weights 0 and finite zero
      gradients, never NaN.
    * No keys at all (S = 0) is that rule for every row: output 0 (B, H, L, Ev),
      weights (B, H, L, 0), log_prob 0, zero gradients; no normalizer runs.
    * NaN in, NaN out: a NaN that reaches a row (in its query, or in a key or
      value it attends to) makes that row's output NaN, never a silent 0; a row
      with no allowed key stays 0. ``check_finite=True`` refuses such inputs.

    Example::

        >>> q = torch.tensor([[[1.0, 1.0]]]); k = v = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
        >>> out, w = attention(q, k, v, score="dot", return_weights=True)
        >>> w  # softmax([1, 2])
        tensor([[[0.2689, 0.7311]]])
    """
    if (
        (type(score) is ScaledDot or (type(score) is str and score == "scaled_dot"))
        and (type(normalizer) is Softmax or (type(normalizer) is str and normalizer == "softmax"))
        and mask is None and score_mod is None
        and mask_mod is None and scale is None and dropout_p == 0.0 and not return_weights
        and not return_log_prob and not check_finite and backend == "auto"
        and score_params is None and normalizer_params is None
        and allowed_backends() is None and SDPABackend.takes_plain(query, key, value, causal)
    ):  # the plainest call (every Transformer layer's): what dispatch would choose, without a spec
        return SDPABackend.run_plain(query, key, value, causal)
    three_d = query.dim() == 3 if isinstance(query, Tensor) else False
    spec = build_spec(
        query,
        key,
        value,
        score=score,
        score_params=score_params,
        normalizer=normalizer,
        normalizer_params=normalizer_params,
        mask=mask,
        causal=causal,
        score_mod=score_mod,
        mask_mod=mask_mod,
        scale=scale,
        dropout_p=dropout_p,
        generator=generator,
        return_weights=return_weights,
        return_log_prob=return_log_prob,
        check_finite=check_finite,
    )
    chosen = select_backend(spec, backend)  # also for S = 0: a forced backend still explains a refusal
    result = no_keys(spec) if spec.S == 0 else chosen.forward(spec)
    return _pack(result, spec, three_d)


def _pack(result: AttentionResult, spec: AttentionSpec, three_d: bool) -> Tensor | tuple[Tensor, ...]:
    def sq(t: Tensor) -> Tensor:
        return t.squeeze(1) if three_d else t  # (B, 1, ...) -> (B, ...)

    out: list[Tensor] = [sq(result.output)]
    if spec.return_weights:
        assert result.weights is not None
        out.append(sq(result.weights))
    if spec.return_log_prob:
        assert result.log_prob is not None
        out.append(sq(result.log_prob))
    return out[0] if len(out) == 1 else tuple(out)
