"""``copy``, ``reverse``, ``sort``: synthetic sequence transductions.

The first tests of attention models (Graves et al. 2014, arXiv:1410.5401;
Vinyals et al. 2015, arXiv:1506.03134): copy "cab" -> "cab", reverse "cab" ->
"bac", sort "cab" -> "abc". Valid and test sequences never occur in training.
"""

from __future__ import annotations

import random
from typing import Callable

from .base import Example, Seq2SeqTask, register_task
from .vocab import Vocab

__all__ = ["SyntheticTask", "TRANSFORMS"]

#: task name -> what it does to a sequence
TRANSFORMS: dict[str, Callable[[str], str]] = {
    "copy": lambda s: s,
    "reverse": lambda s: s[::-1],
    "sort": lambda s: "".join(sorted(s)),
}


#: what each synthetic task's target is (``attnkit tasks``)
SOURCES = {"copy": "the same string", "reverse": "the string reversed", "sort": "its characters sorted"}


class SyntheticTask(Seq2SeqTask):
    unit = "char"
    source = "generated: random strings"

    def max_target_len(self, src_len: int) -> int:
        return src_len + 3


def _make(
    name: str, *, seed: int, alphabet: str, min_len: int, max_len: int, train: int, valid: int, test: int
) -> SyntheticTask:
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    if len(set(alphabet)) != len(alphabet) or not alphabet or " " in alphabet:
        raise ValueError(f"alphabet must be distinct non-space characters, got {alphabet!r}")
    space = sum(len(alphabet) ** n for n in range(min_len, max_len + 1))
    if train + valid + test > space // 2:
        raise ValueError(f"only {space} distinct sequences of length {min_len}..{max_len}; ask for fewer examples")
    rng = random.Random(f"{name}:{seed}")
    seen: set[str] = set()

    def draw(n: int) -> list[Example]:
        out = []
        while len(out) < n:
            s = "".join(rng.choice(alphabet) for _ in range(rng.randint(min_len, max_len)))
            if s not in seen:
                seen.add(s)
                out.append(Example(s, [TRANSFORMS[name](s)]))
        return out

    test_ex, valid_ex = draw(test), draw(valid)
    splits = {"train": draw(train), "valid": valid_ex, "test": test_ex}
    vocab = Vocab([*Vocab.build([]).itos, *sorted(alphabet)], kind="char")
    task = SyntheticTask(
        splits=splits,
        src_vocab=vocab,
        tgt_vocab=vocab,
        options=dict(
            seed=seed, alphabet=alphabet, min_len=min_len, max_len=max_len, train=train, valid=valid, test=test
        ),
    )
    task.name = name
    task.source = f"generated: random strings -> {SOURCES[name]}"
    task.probes = (alphabet[: min(len(alphabet), 8)][::-1], alphabet[:3] * 2)
    return task


def _register(name: str) -> None:
    @register_task(name)
    def factory(
        *,
        seed: int = 0,
        alphabet: str = "abcdefghijklmnopqrst",
        min_len: int = 3,
        max_len: int = 10,
        train: int = 20000,
        valid: int = 500,
        test: int = 1000,
    ) -> SyntheticTask:
        return _make(
            name, seed=seed, alphabet=alphabet, min_len=min_len, max_len=max_len, train=train, valid=valid, test=test
        )

    factory.__doc__ = f"``{name}`` of random strings over ``alphabet`` with lengths ``min_len..max_len``."


for _name in TRANSFORMS:
    _register(_name)
