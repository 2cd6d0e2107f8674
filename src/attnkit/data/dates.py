"""``dates``: human-written dates in many formats -> ISO 8601 (generated).

"Tuesday, March 3, 2021", "3rd of march 2021", "03.03.2021" -> "2021-03-03".
The classic toy for watching attention pick out the day, month and year
wherever the format puts them (the Keras/Coursera "neural machine
translation of dates" exercise after Bahdanau et al. 2014, arXiv:1409.0473).
Validation and test dates are held out: no calendar day in them is in training.
"""

from __future__ import annotations

import datetime as dt
import random

from .base import Example, Seq2SeqTask, register_task, split_indices
from .vocab import Vocab

__all__ = ["DatesTask", "FORMATS", "format_date"]


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


#: format name -> function(date) -> text. Slashed dates are month-first (US) only, so no text is ambiguous.
FORMATS = {
    "d B Y": lambda d: f"{d.day} {d:%B} {d.year}",
    "B d, Y": lambda d: f"{d:%B} {d.day}, {d.year}",
    "A, B d, Y": lambda d: f"{d:%A}, {d:%B} {d.day}, {d.year}",
    "dd b Y": lambda d: f"{d:%d} {d:%b} {d.year}",
    "b d Y": lambda d: f"{d:%b} {d.day} {d.year}",
    "dd.mm.Y": lambda d: f"{d:%d}.{d:%m}.{d.year}",
    "mm/dd/Y": lambda d: f"{d:%m}/{d:%d}/{d.year}",
    "Y/mm/dd": lambda d: f"{d.year}/{d:%m}/{d:%d}",
    "dth of B Y": lambda d: f"{_ordinal(d.day)} of {d:%B} {d.year}",
    "a d b Y": lambda d: f"{d:%a} {d.day} {d:%b} {d.year}",
    "b dth, Y": lambda d: f"{d:%b} {_ordinal(d.day)}, {d.year}",
    "lower B d Y": lambda d: f"{d:%B} {d.day} {d.year}".lower(),
    "lower d b Y": lambda d: f"{d.day} {d:%b} {d.year}".lower(),
    "upper d B Y": lambda d: f"{d.day} {d:%B} {d.year}".upper(),
}


def format_date(d: dt.date, fmt: str) -> str:
    """``format_date(date(2021, 3, 3), "dth of B Y") == "3rd of March 2021"``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown date format {fmt!r}; formats: {', '.join(FORMATS)}")
    return FORMATS[fmt](d)


class DatesTask(Seq2SeqTask):
    name = "dates"
    unit = "char"
    source = "generated: calendar days in 14 written formats -> ISO 8601"
    probes = ("Tuesday, March 3, 2021", "3rd of march 2021", "07/04/1976")

    def normalize(self, text: str) -> str:
        return " ".join(text.strip().split())

    def max_target_len(self, src_len: int) -> int:
        return 12


@register_task("dates")
def dates(
    *,
    seed: int = 0,
    first_year: int = 1900,
    last_year: int = 2099,
    train: int = 20000,
    valid: int = 500,
    test: int = 1000,
) -> DatesTask:
    """``train`` (date, random format) pairs; ``valid``/``test`` dates never appear in training."""
    if not 1 <= first_year <= last_year <= 9999:
        raise ValueError(f"need 1 <= first_year <= last_year <= 9999, got {first_year}..{last_year}")
    start = dt.date(first_year, 1, 1)
    n_days = (dt.date(last_year, 12, 31) - start).days + 1
    tr, va, te = split_indices(n_days, valid=valid, test=test, seed=seed)
    rng = random.Random(seed)
    fmts = list(FORMATS)

    def ex(i: int) -> Example:
        d = start + dt.timedelta(days=i)
        return Example(format_date(d, rng.choice(fmts)), [d.isoformat()])

    splits = {
        "train": [ex(tr[rng.randrange(len(tr))]) for _ in range(train)],
        "valid": [ex(i) for i in va],
        "test": [ex(i) for i in te],
    }
    src_vocab = Vocab.build([e.src for e in splits["train"]], kind="char")
    tgt_vocab = Vocab.build([t for e in splits["train"] for t in e.tgts], kind="char")
    opts = dict(first_year=first_year, last_year=last_year, train=train, valid=valid, test=test)
    return DatesTask(splits=splits, src_vocab=src_vocab, tgt_vocab=tgt_vocab, options={"seed": seed, **opts})
