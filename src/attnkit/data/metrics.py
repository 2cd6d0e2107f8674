"""Sequence metrics: edit distance, exact match, token/phoneme/word error rates, chrF.

Error rates follow the speech and G2P literature: total Levenshtein edits over
total reference length (Yao & Zweig 2015, arXiv:1506.00196, report PER this
way; WER for G2P is the fraction of words with any phoneme wrong). With
several references (CMUdict words with more than one pronunciation) each
hypothesis is scored against the closest one.
"""

from __future__ import annotations

from typing import Sequence

from ..core.optional import require

__all__ = ["edit_distance", "closest_reference", "sequence_metrics", "chrf"]


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (insert, delete, substitute all cost 1).

    >>> edit_distance("kitten", "sitting")
    3
    """
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def closest_reference(hyp: Sequence, refs: Sequence[Sequence]) -> tuple[int, Sequence]:
    """(distance, reference) of the reference nearest ``hyp``; ties go to the first."""
    if not refs:
        raise ValueError("closest_reference needs at least one reference, got none")
    best = min(((edit_distance(hyp, r), i) for i, r in enumerate(refs)))
    return best[0], refs[best[1]]


def sequence_metrics(
    hyps: Sequence[Sequence[str]],
    refs: Sequence[Sequence[Sequence[str]]],
    *,
    words: str = "split",
    joiner: str = "",
) -> dict[str, float]:
    """Exact match, token error rate and word error rate over a corpus.

    ``hyps[i]`` is a token list; ``refs[i]`` is a list of acceptable token lists.
    ``words="split"``: WER is the word-level edit rate, words being the tokens
    joined with ``joiner`` and split on whitespace; ``words="sequence"``: each whole sequence is one
    word (G2P convention), so WER = 1 - exact match.
    """
    if len(hyps) != len(refs):
        raise ValueError(f"got {len(hyps)} hypotheses for {len(refs)} references; give one per example")
    if words not in ("split", "sequence"):
        raise ValueError(f"words must be 'split' or 'sequence', got {words!r}")
    n = len(hyps)
    exact = tok_err = tok_len = word_err = word_len = 0
    for h, rs in zip(hyps, refs):
        d, r = closest_reference(list(h), [list(x) for x in rs])
        exact += d == 0
        tok_err += d
        tok_len += len(r)
        if words == "split":
            hw, rw = joiner.join(h).split(), joiner.join(r).split()
            word_err += edit_distance(hw, rw)
            word_len += len(rw)
    out = {
        "exact_match": exact / max(n, 1),
        "token_error_rate": tok_err / max(tok_len, 1),
        "examples": float(n),
    }
    out["word_error_rate"] = (word_err / max(word_len, 1)) if words == "split" else 1.0 - out["exact_match"]
    return out


def chrf(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus chrF (Popović 2015) through sacrebleu, on a 0..100 scale.

    Raises :class:`~attnkit.core.optional.MissingExtra` without sacrebleu (``pip install 'attnkit[data]'``).
    """
    sacrebleu = require("sacrebleu", purpose="chrF")
    return float(sacrebleu.metrics.CHRF().corpus_score(list(hyps), [list(refs)]).score)
