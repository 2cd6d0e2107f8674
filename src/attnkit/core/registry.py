"""One registry class behind every name lookup in attnkit (after timm's ``_registry.py``).

Scores, normalizers, backends, mechanisms, models and tasks are each one
:class:`Registry`: a read-only mapping from a canonical name to an entry, with
aliases, an optional name normaliser (mechanisms ignore case and ``_``/``-``), and
one "did you mean" error for every kind::

    SCORES = Registry("score")

    @SCORES.register("additive", "bahdanau", "concat")
    class Additive(Score): ...

    SCORES["bahdanau"] is Additive            # aliases resolve
    SCORES.get("addtive")                     # ValueError: unknown score 'addtive'; did you mean 'additive'? ...
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, Mapping, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


def _identity(name: str) -> str:
    return name


class Registry(Mapping[str, T], Generic[T]):
    """Names -> entries of one kind ("score", "backend", ...).

    Iterating, ``len`` and ``in`` see every name, aliases included (``in``
    normalises the name first); :meth:`canonical` lists one name per entry.

    Args:
        kind: what the entries are, for error messages ("unknown {kind} ...").
        normalize: maps a user's spelling to a stored name (default: unchanged).
        hint: appended to the unknown-name error, e.g. where to list the names.
    """

    def __init__(self, kind: str, *, normalize: Callable[[str], str] = _identity, hint: str = "") -> None:
        self.kind = kind
        self._normalize = normalize
        self._hint = hint
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}  # every name, canonical ones included -> canonical name
        #: bumped by every add and remove, so a cache of lookups can tell that the entries changed
        self.version = 0

    # -- adding -------------------------------------------------------------------------------
    def add(self, name: str, entry: T, *aliases: str) -> T:
        """Register ``entry`` under ``name`` and ``aliases``; a name taken by another entry raises."""
        canon = self._normalize(name)
        names = [canon, *(self._normalize(a) for a in aliases)]
        for n in names:
            owner = self._aliases.get(n)
            if owner is not None and self._entries[owner] is not entry:
                raise ValueError(f"{self.kind} name {n!r} is already registered to {self._describe(owner)}")
        self._entries[canon] = entry
        for n in names:
            self._aliases[n] = canon
        self.version += 1
        return entry

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@REGISTRY.register("name", "alias")``."""

        def deco(entry: T) -> T:
            return self.add(name, entry, *aliases)

        return deco

    def remove(self, name: str) -> T:
        """Unregister ``name``'s entry and every alias of it; returns the entry."""
        canon = self.resolve(name)
        for n in [n for n, c in self._aliases.items() if c == canon]:
            del self._aliases[n]
        self.version += 1
        return self._entries.pop(canon)

    # -- reading ------------------------------------------------------------------------------
    def resolve(self, name: str) -> str:
        """The canonical name of ``name`` (an alias or a canonical name); unknown names raise."""
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a str, got {type(name).__name__}")
        n = self._normalize(name)
        if n not in self._aliases:
            raise self.unknown(name)
        return self._aliases[n]

    def get(self, name: str, default: object = None) -> T:  # type: ignore[override]
        """The entry of ``name``; unlike ``dict.get`` an unknown name raises (did you mean ...)."""
        return self._entries[self.resolve(name)]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._normalize(name) in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._aliases)

    def __len__(self) -> int:
        return len(self._aliases)

    def canonical(self) -> list[str]:
        """One name per entry, sorted."""
        return sorted(self._entries)

    def aliases_of(self, name: str) -> list[str]:
        """The other names of ``name``'s entry, sorted."""
        canon = self.resolve(name)
        return sorted(n for n, c in self._aliases.items() if c == canon and n != canon)

    def entries(self) -> dict[str, T]:
        """canonical name -> entry (a copy)."""
        return dict(self._entries)

    def unknown(self, name: str) -> ValueError:
        """The error for an unknown name: close matches first, then every valid name."""
        close = difflib.get_close_matches(self._normalize(str(name)), list(self._aliases), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        tail = f" ({self._hint})" if self._hint else ""
        valid = ", ".join(sorted(self._aliases))
        return ValueError(f"unknown {self.kind} {name!r}{hint} valid {self.kind}s: {valid}{tail}")

    def _describe(self, canon: str) -> str:
        entry = self._entries[canon]
        return getattr(entry, "__qualname__", None) or getattr(type(entry), "__name__", repr(entry))

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.canonical()})"
