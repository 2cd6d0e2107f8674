"""Vocabularies: characters or whitespace-separated symbols (phonemes) <-> ids.

Ids 0..3 are reserved: PAD=0, BOS=1, EOS=2, UNK=3. A vocabulary round-trips
through JSON (``to_json`` / ``from_json``) so a checkpoint carries it without
pickles.
"""

from __future__ import annotations

from typing import Iterable, Sequence

__all__ = ["Vocab", "PAD", "BOS", "EOS", "UNK", "SPECIALS"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
KINDS = ("char", "symbol")


class Vocab:
    """A fixed token <-> id table.

    ``kind="char"``: a string is split into characters and ``decode`` joins
    with ``""``. ``kind="symbol"``: a string is split on whitespace (phonemes,
    words) and ``decode`` joins with a space.

    >>> v = Vocab.build(["ab", "ba"]); v.encode("ab"), v.decode(v.encode("ab"))
    ([4, 5], 'ab')
    """

    PAD, BOS, EOS, UNK = PAD, BOS, EOS, UNK

    def __init__(self, tokens: Sequence[str], *, kind: str = "char") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with the special tokens {SPECIALS}, got {tokens[:4]}")
        if len(set(tokens)) != len(tokens):
            dup = sorted({t for t in tokens if tokens.count(t) > 1})
            raise ValueError(f"vocabulary tokens must be unique; repeated: {dup}")
        self.kind = kind
        self.itos: list[str] = tokens
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, texts: Iterable[str | Sequence[str]], *, kind: str = "char") -> "Vocab":
        """All tokens seen in ``texts``, sorted, after the specials."""
        seen: set[str] = set()
        for t in texts:
            seen.update(cls._split(t, kind))
        return cls([*SPECIALS, *sorted(seen - set(SPECIALS))], kind=kind)

    @staticmethod
    def _split(text: str | Sequence[str], kind: str) -> list[str]:
        if not isinstance(text, str):
            return list(text)
        return list(text) if kind == "char" else text.split()

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and other.kind == self.kind and other.itos == self.itos

    def __repr__(self) -> str:
        return f"Vocab({len(self)} {self.kind} tokens)"

    def tokens(self, text: str | Sequence[str]) -> list[str]:
        """``text`` split into this vocabulary's tokens (no lookup)."""
        return self._split(text, self.kind)

    def unknown(self, text: str | Sequence[str]) -> list[str]:
        """The tokens of ``text`` that are not in the vocabulary, in order, once each."""
        out: list[str] = []
        for t in self.tokens(text):
            if t not in self.stoi and t not in out:
                out.append(t)
        return out

    def encode(self, text: str | Sequence[str], *, strict: bool = False) -> list[int]:
        """Token ids of ``text``; unknown tokens map to UNK, or raise ValueError with ``strict``."""
        if strict:
            bad = self.unknown(text)
            if bad:
                raise ValueError(
                    f"{', '.join(repr(b) for b in bad)} not in the vocabulary; "
                    f"known {self.kind}s: "
                    f"{''.join(self.itos[4:]) if self.kind == 'char' else ' '.join(self.itos[4:])!r}"
                )
        return [self.stoi.get(t, UNK) for t in self.tokens(text)]

    def decode(self, ids: Iterable[int], *, strip: bool = True) -> str:
        """Text of ``ids``; stops at EOS and drops PAD/BOS when ``strip``."""
        out = []
        for i in ids:
            i = int(i)
            if strip and i == EOS:
                break
            if strip and i in (PAD, BOS):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else SPECIALS[UNK])
        return ("" if self.kind == "char" else " ").join(out)

    def to_json(self) -> dict:
        return {"kind": self.kind, "tokens": list(self.itos)}

    @classmethod
    def from_json(cls, obj: dict) -> "Vocab":
        if not isinstance(obj, dict) or "tokens" not in obj:
            raise ValueError(f"a vocabulary JSON needs 'kind' and 'tokens', got {type(obj).__name__}")
        return cls(obj["tokens"], kind=obj.get("kind", "char"))
