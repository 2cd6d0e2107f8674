"""The mechanism registry: ``attnkit.create(name, dim, **kw)`` and ``attnkit.list_mechanisms()``.

A mechanism is registered on its class with a decorator that names it, its
aliases, the paper and the one-line formula, and the constructor defaults
that turn the class into that mechanism::

    @register_mechanism("luong-general", "multiplicative", paper="Luong et al. 2015 (arXiv:1508.04025)",
                        formula="score = h_tᵀ W_a h̄_s", defaults={"mode": "general"})
    class LuongAttention(nn.Module): ...

:data:`MECHANISMS` is one :class:`~attnkit.core.registry.Registry` of
:class:`MechanismInfo`; ``import attnkit.nn`` fills it (every mechanism module
registers itself on import, and importing this module runs ``attnkit/nn/__init__``
first). A mechanism name never is an alignment score's name (``additive``,
``general``, ``dot`` ... are scores of :mod:`attnkit.core.scores`):
:func:`attnkit.presets.resolve_attention` says what ``--attention NAME`` means
for each kind of model.

Constructor convention (what :func:`create` relies on)
------------------------------------------------------
Every mechanism of kind ``"sequence"`` is built as::

    create(name, query_dim, *, key_dim=None, value_dim=None, **options, device=None, dtype=None)

``query_dim`` (positional) is the size of the decoder state / query features;
``key_dim`` the size of the encoder outputs (default ``query_dim``);
``value_dim`` the size of the values (default ``key_dim``). Every built
module has an ``output_dim`` attribute: the size of the context it returns,
so a decoder can size the layer that reads it. All of them accept the
decoder-style call of :mod:`attnkit.nn.base`::

    out = mech(query, keys, values=None, *, key_allowed=None, step=None, state=None, need_weights=False)
    # query (B, L, query_dim) or one step (B, query_dim); keys (B, S, key_dim);
    # key_allowed (B, S) bool, True = may be attended (a real token), False = padding
    # (torch's key_padding_mask is its negation); out is an AttentionOutput
    # (context (B, [L,] output_dim), weights, log_prob, state for the next step)

``multi-head`` and ``self-attention`` also take ``num_heads`` (8 and 1 by
default), which must divide ``query_dim`` (or pass ``head_dim``); their
context has ``out_dim`` (default ``query_dim``) features. ``luong-location``
needs ``max_source_len``; ``luong-dot`` needs ``key_dim == query_dim``.
Stateful mechanisms return in ``state`` what the next step needs (content:
the previous weights (B, S); multi-head: its KVCache when given one; local:
``{"centers": p_t}``); pass it back as ``state=``. Stateless ones return None.

Mechanisms of kind ``"vision"`` are built as ``create(name, channels, **options)``
and take (B, C, H, W) images; kind ``"unit"`` (sigma-pi) as
``create(name, in_features, **options)``.

An unknown name raises a ValueError that lists the close matches (and, for a
score's name, the mechanism that used to answer to it: :data:`RETIRED_ALIASES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch.nn as nn

from ..core.registry import Registry

__all__ = [
    "MechanismInfo",
    "MECHANISMS",
    "RETIRED_ALIASES",
    "register_mechanism",
    "create",
    "list_mechanisms",
    "mechanism_info",
    "resolve",
]

KINDS = ("sequence", "vision", "unit")


@dataclass(frozen=True)
class MechanismInfo:
    name: str
    cls: type
    aliases: tuple[str, ...]
    paper: str
    formula: str
    kind: str = "sequence"
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def build(self, dim: int, **kwargs: Any) -> nn.Module:
        return self.cls(dim, **{**self.defaults, **kwargs})


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


#: canonical name (aliases resolve; case and ``_``/``-`` ignored) -> MechanismInfo
MECHANISMS: Registry[MechanismInfo] = Registry(
    "attention mechanism", normalize=_norm, hint="see attnkit.list_mechanisms() or `attnkit list`"
)

#: names of alignment scores that were also mechanism aliases -> the mechanism they named
#: (a run configured with one of them names that mechanism)
RETIRED_ALIASES: Mapping[str, str] = {
    "additive": "bahdanau",
    "concat": "luong-concat",
    "dot": "luong-dot",
    "general": "luong-general",
    "bilinear": "luong-general",
    "location": "luong-location",
    "cosine": "content",
    "ntm": "content",
    "scaled-dot": "multi-head",
}


def register_mechanism(
    name: str,
    *aliases: str,
    paper: str,
    formula: str,
    kind: str = "sequence",
    defaults: Mapping[str, Any] | None = None,
) -> Callable[[type], type]:
    """Class decorator: register the class (with ``defaults``) as mechanism ``name``.

    Stack several on one class to register its variants (Luong's modes).
    Names are case-insensitive and ``_`` equals ``-``; a name another class holds
    raises, the same class registering again replaces its entry.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not paper or not formula:
        raise ValueError(f"mechanism {name!r}: pass its paper and its one-line formula")

    def deco(cls: type) -> type:
        names = [_norm(name), *(_norm(a) for a in aliases)]
        for n in names:
            if n in MECHANISMS:
                owner = MECHANISMS[n]
                if owner.cls is not cls:
                    raise ValueError(f"mechanism name {n!r} is already registered to {owner.cls.__name__}")
                MECHANISMS.remove(n)  # the same class again (a module reloaded): its new entry wins
        info = MechanismInfo(names[0], cls, tuple(names[1:]), paper, formula, kind, dict(defaults or {}))
        MECHANISMS.add(names[0], info, *names[1:])
        return cls

    return deco


def resolve(name: str) -> str:
    """The canonical name of ``name`` (an alias or a canonical name)."""
    try:
        return MECHANISMS.resolve(name)
    except ValueError as e:
        old = RETIRED_ALIASES.get(_norm(name))
        if old is None:
            raise
        raise ValueError(
            f"{e}; {name!r} is the name of an alignment score, not of a mechanism: "
            f"the mechanism it used to name is {old!r}"
        ) from None


def mechanism_info(name: str) -> MechanismInfo:
    """The :class:`MechanismInfo` of a name or alias."""
    return MECHANISMS.get(resolve(name))


def create(name: str, dim: int, **kwargs: Any) -> nn.Module:
    """Build a registered mechanism: ``create("bahdanau", 256, key_dim=512)``.

    ``dim`` is the query size for sequence mechanisms (``key_dim`` defaults to
    it, ``value_dim`` to ``key_dim``), the channel count for vision ones and the
    input size for sigma-pi; see the module docstring for the convention.

    Example::

        >>> m = create("bahdanau", 4, key_dim=6)
        >>> m.query_dim, m.key_dim, m.value_dim
        (4, 6, 6)
    """
    info = mechanism_info(name)
    return info.build(dim, **kwargs)


def list_mechanisms(*, kind: str | None = None, aliases: bool = False) -> list[str]:
    """Canonical mechanism names (sorted); ``aliases=True`` adds every alias."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    infos = [i for i in MECHANISMS.entries().values() if kind is None or i.kind == kind]
    names = [i.name for i in infos]
    if aliases:
        names += [a for i in infos for a in i.aliases]
    return sorted(names)
