"""Dispatch: which backend runs a call (after xformers' ``fmha/dispatch.py``).

``backend="name"`` forces one and raises a ValueError listing its reasons when it
cannot run the call. ``backend="auto"`` walks :func:`backend_names` (highest
``priority`` first, inside :func:`restrict_backends` only the names it allows) and
takes the first backend with no reasons, unless the small-call policy
(:func:`auto_declines`) passes the call on.

The choice is memoised on what decides it (:func:`dispatch_key`): device type and
dtype, the score and normalizer classes, the kind of mask, causal, which mods are
present (and whether they capture tensors that need grad), dropout, weights, the
shapes (heads, head dims, and the sizes the memory estimates read), whether
gradients are needed, the backends allowed and the registry's version. A call whose
check reads the device's free memory (:meth:`Backend.probes_memory`) is not memoised:
its answer depends on the moment.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Hashable, Iterator

import torch

from ..core.spec import AttentionSpec
from .base import BACKENDS, Backend, captured_grad_tensors, format_bytes, get_backend

__all__ = [
    "select_backend",
    "restrict_backends",
    "allowed_backends",
    "auto_declines",
    "backend_names",
    "dispatch_key",
    "SMALL_FOR_MATH",
    "SMALL_TO_MATH",
]

#: backends whose tile loop ``auto`` skips for a call that ``math`` runs in one pass
#: materialising at most :data:`SMALL_FOR_MATH` bytes: there one materialised pass costs
#: less than a loop over tiles. A preference, not a refusal: forcing the backend still runs it.
SMALL_TO_MATH: tuple[str, ...] = ("chunked",)
SMALL_FOR_MATH = 256 << 20

#: entries kept before the memo starts afresh (one per distinct kind of call)
MEMO_SIZE = 512

_ALLOWED: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("attnkit_backends", default=None)
_MEMO: dict[Hashable, Backend] = {}


def backend_names() -> list[str]:
    """Registered backends, highest priority first: the order ``backend="auto"`` tries them in."""
    return [b.name for b in sorted(BACKENDS.values(), key=lambda b: -b.priority)]


def allowed_backends() -> tuple[str, ...] | None:
    """The names :func:`restrict_backends` allows here (None: no restriction in force)."""
    return _ALLOWED.get()


@contextlib.contextmanager
def restrict_backends(*names: str) -> Iterator[None]:
    """Let ``backend="auto"`` choose only among ``names`` inside the block.

    Like ``torch.nn.attention.sdpa_kernel``::

        with attnkit.backends.restrict_backends("chunked", "math"):
            attnkit.functional.attention(q, k, v, score=additive)
    """
    for n in names:
        get_backend(n)
    token = _ALLOWED.set(tuple(names))
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def auto_declines(backend: Backend, spec: AttentionSpec, allowed: tuple[str, ...] | None = None) -> str | None:
    """Why ``backend="auto"`` passes ``spec``, which ``backend`` can run, on to a later backend
    (None: take it). The small-call policy: a backend in :data:`SMALL_TO_MATH` passes calls
    that ``math`` can run materialising at most :data:`SMALL_FOR_MATH` bytes, when
    ``allowed`` (the names :func:`restrict_backends` permits; None: all) includes math."""
    if backend.name not in SMALL_TO_MATH or (allowed is not None and "math" not in allowed):
        return None
    math_backend = BACKENDS["math"] if "math" in BACKENDS else None
    if math_backend is None:
        return None
    need = math_backend.memory_bytes(spec)
    if need > SMALL_FOR_MATH or math_backend.not_supported_reasons(spec):
        return None
    return (f"small call: math materialises only {format_bytes(need)} (<= {format_bytes(SMALL_FOR_MATH)}) "
            f"and is faster there (force backend={backend.name!r} to run it anyway)")


def _mods_key(spec: AttentionSpec) -> Hashable:
    """Which mods are present and, when gradients are recorded, which captured tensors need grad."""
    if spec.score_mod is None and spec.mask_mod is None:
        return None
    grad = torch.is_grad_enabled()
    return tuple(
        None if fn is None else tuple(captured_grad_tensors(fn)) if grad else ()
        for fn in (spec.score_mod, spec.mask_mod)
    )


def dispatch_key(spec: AttentionSpec, allowed: tuple[str, ...] | None) -> Hashable:
    """Everything :func:`select_backend` reads of ``spec`` (besides the free memory, never memoised)."""
    mask = spec.mask
    score = spec.score
    params = score.params()
    return (
        spec.device_type,
        spec.dtype,
        type(score),
        tuple(p.shape for p in params) if params else None,
        type(spec.normalizer),
        None if mask is None else (mask.dtype, mask.requires_grad),
        spec.causal,
        _mods_key(spec),
        spec.dropout_p > 0,
        spec.return_weights,
        spec.query.shape,
        spec.key.shape,
        spec.value.shape,
        spec.needs_grad,
        allowed,
        BACKENDS.version,
    )


def _forced(spec: AttentionSpec, name: str) -> Backend:
    b = get_backend(name)
    reasons = b.not_supported_reasons(spec)
    if reasons:
        raise ValueError(
            f"backend {name!r} cannot run this call: {'; '.join(reasons)}. "
            "Pass backend='auto' to let attnkit choose, or change the inputs"
        )
    return b


def _choose(spec: AttentionSpec, allowed: tuple[str, ...] | None) -> tuple[Backend, bool]:
    """(the first backend that takes ``spec``, whether the choice may be memoised)."""
    refusals = []
    memoisable = True
    for name in backend_names():
        if allowed is not None and name not in allowed:
            continue
        b = BACKENDS[name]
        reasons = b.not_supported_reasons(spec)
        if b.probes_memory(spec):
            memoisable = False
        if not reasons:
            declined = auto_declines(b, spec, allowed)
            if declined is None:
                return b, memoisable
            if BACKENDS["math"].probes_memory(spec):
                memoisable = False
            reasons = [declined]
        refusals.append(f"{name}: {'; '.join(reasons)}")
    raise ValueError("no backend can run this call: " + " | ".join(refusals))


def select_backend(spec: AttentionSpec, backend: str = "auto") -> Backend:
    """The backend that runs ``spec``: forced by name, or the first that can (memoised)."""
    if backend != "auto":
        return _forced(spec, backend)
    allowed = _ALLOWED.get()
    if "ATTNKIT_MEMORY_LIMIT" in os.environ:  # every check probes the (pretended) free memory
        return _choose(spec, allowed)[0]
    key = dispatch_key(spec, allowed)
    b = _MEMO.get(key)
    if b is not None:
        return b
    b, memoisable = _choose(spec, allowed)
    if memoisable:
        if len(_MEMO) >= MEMO_SIZE:
            _MEMO.clear()
        _MEMO[key] = b
    return b
