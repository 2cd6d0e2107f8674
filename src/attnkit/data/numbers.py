"""``numbers``: number words from one language to another, through the ``num2words`` package.

English -> German by default: "forty-three" -> "dreiundvierzig". German says
the units before the tens, so the alignment must reorder — a real alignment
to look at (Bahdanau et al. 2014, arXiv:1409.0473, Fig. 3 shows the same kind
of crossing on English -> French). The test and validation numbers are held
out: no number in them appears in training.
"""

from __future__ import annotations

from functools import lru_cache

from ..core.optional import require
from .base import Example, Seq2SeqTask, register_task, split_indices
from .vocab import Vocab

__all__ = ["NumbersTask", "number_words"]


@lru_cache(maxsize=None)
def _words(lang: str, lo: int, hi: int) -> tuple[str, ...]:
    num2words = require("num2words", purpose="the numbers task").num2words
    return tuple(num2words(n, lang=lang) for n in range(lo, hi + 1))


def number_words(n: int, *, lang: str = "en") -> str:
    """``number_words(43, lang="de") == "dreiundvierzig"``."""
    num2words = require("num2words", purpose="the numbers task").num2words
    try:
        return num2words(int(n), lang=lang)
    except NotImplementedError:
        raise ValueError(f"num2words has no language {lang!r}; try en, de, fr, es, it, nl") from None


class NumbersTask(Seq2SeqTask):
    name = "numbers"
    unit = "char"
    source = "the num2words package: numbers written out, one language -> another"
    probes = ("forty-three", "seven hundred and twenty-one", "two thousand and nineteen")

    def normalize(self, text: str) -> str:
        return " ".join(text.strip().lower().split())


@register_task("numbers")
def numbers(
    *,
    seed: int = 0,
    src_lang: str = "en",
    tgt_lang: str = "de",
    low: int = 0,
    high: int = 999,
    valid: int = 50,
    test: int = 150,
) -> NumbersTask:
    """Numbers ``low..high`` written out in ``src_lang`` -> in ``tgt_lang``; ``valid``/``test`` numbers held out."""
    if not 0 <= low < high:
        raise ValueError(f"need 0 <= low < high, got low={low}, high={high}")
    if high > 10**7:
        raise ValueError(f"high={high} makes a task larger than memory allows here; use high <= 10000000")
    for arg, lang in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
        try:
            number_words(1, lang=lang)
        except ValueError as e:
            raise ValueError(f"{arg}: {e}") from None
    src, tgt = _words(src_lang, low, high), _words(tgt_lang, low, high)
    tr, va, te = split_indices(high - low + 1, valid=valid, test=test, seed=seed)
    splits = {k: [Example(src[i], [tgt[i]]) for i in idx] for k, idx in (("train", tr), ("valid", va), ("test", te))}
    src_vocab = Vocab.build([e.src for e in splits["train"]], kind="char")
    tgt_vocab = Vocab.build([t for e in splits["train"] for t in e.tgts], kind="char")
    opts = dict(src_lang=src_lang, tgt_lang=tgt_lang, low=low, high=high, valid=valid, test=test)
    task = NumbersTask(splits=splits, src_vocab=src_vocab, tgt_vocab=tgt_vocab, options={"seed": seed, **opts})
    task.numbers = {k: [low + i for i in idx] for k, idx in (("train", tr), ("valid", va), ("test", te))}
    return task
