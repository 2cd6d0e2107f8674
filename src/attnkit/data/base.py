"""Tasks: the registry, the ``Batch`` of padded tensors, and the sequence-to-sequence task base.

A task owns deterministic, disjoint ``train``/``valid``/``test`` splits (a
function of its options and seed only), its vocabularies, how it cuts batches
and how it scores a model. The training loop (:mod:`attnkit.train`) only calls
``task.batches(...)``, ``model.loss(batch)`` and ``task.evaluate(model, ...)``,
so a language-modelling task with other batch fields plugs in the same way.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

from ..core.optional import MissingExtra, note_missing
from ..core.registry import Registry
from .metrics import chrf, sequence_metrics
from .vocab import BOS, EOS, PAD, Vocab

__all__ = [
    "Batch",
    "Task",
    "Seq2SeqTask",
    "Example",
    "TASKS",
    "register_task",
    "get_task",
    "task_option_defaults",
    "list_tasks",
    "SPLITS",
]

SPLITS = ("train", "valid", "test")

#: task name -> factory ``f(*, seed=0, **options) -> Task``.
TASKS: Registry[Callable[..., "Task"]] = Registry("task")


def register_task(name: str, *aliases: str) -> Callable:
    """Decorator: ``@register_task("numbers")`` adds a task factory (a class or a function) under
    ``name`` and ``aliases``."""
    return TASKS.register(name, *aliases)


def list_tasks() -> list[str]:
    """Every task name, sorted."""
    return sorted(TASKS)


#: the largest value a task option may take: lengths (``*_len``, ``block_size``) and every other number
#: (examples per split, ranges). Run directories are checked against the same bounds on load.
OPTION_LIMITS: dict[str, int] = {"length": 2**14, "number": 10**7}


def _check_option_bound(task: str, key: str, value: Any) -> None:
    """A numeric option beyond :data:`OPTION_LIMITS` is refused before the task is built (it would hang)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or key == "seed":
        return
    kind = "length" if key.endswith("_len") or key == "block_size" else "number"
    bound = OPTION_LIMITS[kind]
    if abs(value) > bound:
        raise ValueError(f"task {task!r}: {key}={value!r} is beyond the bound {bound} for a task {kind} "
                         f"(attnkit.data.base.OPTION_LIMITS); pass a smaller {key}")


def get_task(name: str, *, seed: int = 0, **options: Any) -> "Task":
    """Build the registered task ``name``; unknown names and options list what is valid."""
    factory = TASKS.get(name)
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        bad = [k for k in options if k not in params]
        if bad:
            valid = [k for k in params if k != "seed"]
            raise ValueError(f"task {name!r} has no option {', '.join(map(repr, bad))}; "
                             f"its options: {', '.join(valid)}")
    defaults = task_option_defaults(name)
    for k, v in {"seed": seed, **options}.items():
        _check_option_type(name, k, v, 0 if k == "seed" else defaults.get(k))
        _check_option_bound(name, k, v)
    return factory(seed=seed, **options)


def task_option_defaults(name: str) -> dict[str, Any]:
    """Option -> default of task ``name`` (``seed`` left out; None where the factory gives none)."""
    params = inspect.signature(TASKS.get(name)).parameters
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {k: None if p.default is inspect.Parameter.empty else p.default
            for k, p in params.items() if k != "seed" and p.kind in kinds}


def _check_option_type(task: str, key: str, value: Any, default: Any) -> None:
    """An option must have its default's type (a bool, int, float or str default; others, and None, pass)."""
    if value is None:
        return
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an int"
    elif isinstance(default, float):
        ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, want = isinstance(value, str), "a string"
    else:
        return
    if not ok:
        raise TypeError(f"task {task!r}: option {key} must be {want} (like its default {key}={default!r}), "
                        f"got {value!r} ({type(value).__name__})")


@dataclass
class Batch:
    """Padded tensors of a sequence-to-sequence batch (PAD = 0).

    src (B, S) long, src_lengths (B,), tgt_in (B, T) = BOS + target,
    tgt_out (B, T) = target + EOS, tgt_lengths (B,) counting the EOS.
    ``index`` holds each row's position in its split (for evaluation).
    """

    src: Tensor
    src_lengths: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    tgt_lengths: Tensor
    index: Tensor | None = None

    def to(self, device: torch.device | str) -> "Batch":
        return dataclasses.replace(
            self, **{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                     if getattr(self, f.name) is not None}
        )

    def __len__(self) -> int:
        return int(self.src.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.tgt_lengths.sum())


def pad(seqs: Sequence[Sequence[int]], *, value: int = PAD) -> tuple[Tensor, Tensor]:
    """(B, N) long tensor padded with ``value``, and the (B,) lengths."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), max(1, int(lengths.max()) if len(seqs) else 1)), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out, lengths


@dataclass
class Example:
    """One source and its acceptable targets (several for words with several pronunciations)."""

    src: str
    tgts: list[str]


class Task:
    """What every task offers the training loop (see the module docstring).

    Subclasses set ``name``, ``options`` (what rebuilds the task with
    :func:`get_task`), ``primary_metric`` with ``higher_is_better`` (what picks
    the best checkpoint), and implement ``batches`` and ``evaluate``. A task
    describes data only: the model sizes and training options tuned for it live
    in :mod:`attnkit.presets`.
    """

    name: str = ""
    options: dict[str, Any]
    #: where the data come from, in a few words (``attnkit tasks``)
    source: str = ""
    primary_metric: str = "exact_match"
    higher_is_better: bool = True

    def batches(self, split: str, batch_size: int, *, generator: torch.Generator | None = None) -> Iterator[Any]:
        raise TypeError(f"{type(self).__name__} must implement batches(split, batch_size, *, generator)")

    def evaluate(self, model: torch.nn.Module, split: str, **kw: Any) -> dict[str, float]:
        raise TypeError(f"{type(self).__name__} must implement evaluate(model, split, **kw)")

    def describe(self) -> dict[str, Any]:
        """JSON-able identity: rebuild with ``get_task(d['name'], **d['options'])``."""
        return {"name": self.name, "options": dict(self.options)}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in dict(self.options).items())
        return f"{type(self).__name__}({self.name!r}{', ' + opts if opts else ''})"


class Seq2SeqTask(Task):
    """A task given as examples (source text, acceptable target texts) per split.

    Training batches use every (source, target) pair; evaluation decodes each
    source once and scores it against its closest target.
    """

    #: the name of the target units in reports ("char" -> CER, "phoneme" -> PER)
    unit: str = "char"
    #: "split": WER counts space-separated words; "sequence": one sequence = one word (G2P)
    wer_words: str = "split"
    #: inputs a newcomer can try with ``attnkit predict`` (and the demo's plots)
    probes: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        splits: dict[str, list[Example]],
        src_vocab: Vocab,
        tgt_vocab: Vocab,
        options: dict[str, Any],
    ) -> None:
        for s in SPLITS:
            if s not in splits or not splits[s]:
                raise ValueError(f"task {self.name!r} has an empty {s!r} split; give it more examples")
        self.splits = splits
        self.src_vocab = src_vocab
        self.tgt_vocab = tgt_vocab
        self.options = options
        self._pairs: dict[str, list[tuple[list[int], list[int], int]]] = {}

    # -- data ------------------------------------------------------------------------------
    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(self.splits[s])}" for s in SPLITS)
        return f"{type(self).__name__}({self.name!r}, {sizes}, src {self.src_vocab}, tgt {self.tgt_vocab})"

    def normalize(self, text: str) -> str:
        """How a user's input is cleaned before encoding (subclasses: lowercase, strip)."""
        return text.strip()

    def encode_source(self, text: str) -> list[int]:
        """Ids of a user's input; characters outside the vocabulary raise ValueError naming them."""
        text = self.normalize(text)
        if not text:
            try_these = ", ".join(map(repr, self.probes[:3])) or "the test sources"
            raise ValueError(f"the input is empty; try one of {try_these}")
        return self.src_vocab.encode(text, strict=True)

    def pairs(self, split: str) -> list[tuple[list[int], list[int], int]]:
        """(src ids, tgt ids, example index) for every target of every example in ``split``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if split not in self._pairs:
            sv, tv = self.src_vocab, self.tgt_vocab
            self._pairs[split] = [
                (sv.encode(ex.src), tv.encode(t), i) for i, ex in enumerate(self.splits[split]) for t in ex.tgts
            ]
        return self._pairs[split]

    def collate(self, items: Sequence[tuple[list[int], list[int], int]]) -> Batch:
        src, src_len = pad([s for s, _, _ in items])
        tgt_in, _ = pad([[BOS, *t] for _, t, _ in items])
        tgt_out, tgt_len = pad([[*t, EOS] for _, t, _ in items])
        return Batch(src, src_len, tgt_in, tgt_out, tgt_len, torch.tensor([i for _, _, i in items]))

    def batches(
        self, split: str, batch_size: int, *, generator: torch.Generator | None = None, shuffle: bool = True
    ) -> Iterator[Batch]:
        """One pass over ``split`` in batches; shuffled by ``generator`` (same generator state, same order)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        items = self.pairs(split)
        order = torch.randperm(len(items), generator=generator).tolist() if shuffle else range(len(items))
        order = list(order)
        for i in range(0, len(order), batch_size):
            yield self.collate([items[j] for j in order[i : i + batch_size]])

    # -- scoring ---------------------------------------------------------------------------
    def max_target_len(self, src_len: int) -> int:
        """Decoding budget for a source of ``src_len`` tokens."""
        if getattr(self, "_longest_target", None) is None:
            self._longest_target = max(len(self.tgt_vocab.tokens(t)) for ex in self.splits["train"] for t in ex.tgts)
        return max(self._longest_target + 5, 2 * src_len + 5)

    @torch.no_grad()
    def predict(
        self,
        model: torch.nn.Module,
        sources: Sequence[str],
        *,
        beam_size: int = 1,
        length_penalty: float = 0.0,
        batch_size: int = 256,
        device: torch.device | str | None = None,
    ) -> list[tuple[list[str], Tensor]]:
        """(output tokens, alignment (T, S)) for each source text."""
        was_training = model.training
        model.eval()
        device = device or next(model.parameters()).device
        out: list[tuple[list[str], Tensor]] = []
        try:
            for i in range(0, len(sources), batch_size):
                ids = [self.encode_source(s) for s in sources[i : i + batch_size]]
                src, lengths = pad(ids)
                max_len = self.max_target_len(int(lengths.max()))
                res = model.generate(
                    src.to(device), lengths.to(device), max_len=max_len, beam_size=beam_size,
                    length_penalty=length_penalty,
                )
                for toks, align in res:
                    out.append(([self.tgt_vocab.itos[t] for t in toks], align.cpu()))
        finally:
            model.train(was_training)
        return out

    def evaluate(
        self,
        model: torch.nn.Module,
        split: str = "test",
        *,
        beam_size: int = 1,
        length_penalty: float = 0.0,
        max_examples: int | None = None,
        batch_size: int = 256,
        return_predictions: bool = False,
    ) -> dict[str, Any]:
        """Decode ``split`` and score it: exact_match, token/word error rates (+ chrF for text).

        A metric that cannot be computed here (chrF without sacrebleu) is None, with the reason in
        ``missing`` (metric -> one line naming the extra to install), logged once; the rest is scored.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        exs = self.splits[split][:max_examples] if max_examples else self.splits[split]
        preds = self.predict(model, [e.src for e in exs], beam_size=beam_size, length_penalty=length_penalty,
                             batch_size=batch_size)
        hyps = [p for p, _ in preds]
        refs = [[self.tgt_vocab.tokens(t) for t in e.tgts] for e in exs]
        joiner = "" if self.tgt_vocab.kind == "char" else " "
        m: dict[str, Any] = sequence_metrics(hyps, refs, words=self.wer_words, joiner=joiner)
        m[f"{self.unit}_error_rate"] = m["token_error_rate"]
        if self.tgt_vocab.kind == "char":
            try:
                m["chrf"] = chrf([joiner.join(h) for h in hyps], [e.tgts[0] for e in exs])
            except MissingExtra as e:
                m["chrf"] = None
                m.setdefault("missing", {})["chrf"] = str(e)
                note_missing(f"chrF not computed: {e}")
        if return_predictions:
            m["predictions"] = [
                {"src": e.src, "output": joiner.join(h), "refs": e.tgts, "correct": h in r}
                for e, h, r in zip(exs, hyps, refs)
            ]
        return m


def split_indices(n: int, *, valid: int, test: int, seed: int) -> tuple[list[int], list[int], list[int]]:
    """A seeded permutation of range(n) cut into disjoint (train, valid, test) index lists."""
    if valid + test >= n:
        raise ValueError(f"valid ({valid}) + test ({test}) must leave training examples out of {n}")
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g).tolist()
    return perm[valid + test :], perm[test : test + valid], perm[:test]

