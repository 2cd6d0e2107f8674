"""Image tasks from scikit-learn's bundled digits: ``digits``, ``translated-digits``, ``cluttered-digits``.

* ``digits``: the 1,797 8x8 handwritten digits of ``sklearn.datasets.load_digits`` (UCI optdigits,
  Alpaydin & Kaynak 1998), pixel values 0..16 scaled to 0..1, cut into a stratified
  train/valid/test split that is a function of the seed.
* ``translated-digits``: each digit placed at a random position on a larger black canvas (default
  32x32, 16x the digit's area), the translated MNIST of Mnih et al. 2014, "Recurrent Models of
  Visual Attention" (arXiv:1406.6247, section 4.1).
* ``cluttered-digits``: the same, plus ``clutter`` fragments (random h x w crops, 3 <= h, w <= 4 by
  default, of other digits of the same split) pasted at random places (pixelwise max), the paper's
  cluttered translated MNIST.

The digits are split first, so a test digit never appears in training (in any position, nor as
clutter). Valid and test canvases are drawn once from the seed; the training canvases are drawn
again every epoch from the generator the training loop passes (a function of the seed and the
epoch), so every epoch shows each training digit at a new place and a run resumes exactly.

Batches are :class:`ImageBatch`: ``x`` (B, 1, H, W) float in [0, 1], ``label`` (B,) long.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.optional import require
from .base import SPLITS, Task, register_task

__all__ = ["ImageBatch", "ImageTask", "CanvasTask", "digit_images", "stratified_split", "place", "DIGIT_SIZE",
           "CLASS_NAMES"]

#: the side of one scikit-learn digit, in pixels
DIGIT_SIZE = 8
#: the largest value of a digit's pixel in load_digits (4x4 blocks of a 32x32 bitmap, counted)
_PIXEL_MAX = 16.0
CLASS_NAMES = tuple(str(d) for d in range(10))
#: fractions of each class in valid and test (the rest trains)
_VALID, _TEST = 0.1, 0.2


@dataclass
class ImageBatch:
    """Images and their classes: ``x`` (B, C, H, W) float, ``label`` (B,) long, ``index`` (B,) row in its split."""

    x: Tensor
    label: Tensor
    index: Tensor | None = None

    def to(self, device: torch.device | str) -> "ImageBatch":
        return ImageBatch(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device))
                             for f in fields(self)})

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_tokens(self) -> int:
        """Images in the batch (the throughput of an image task is counted in images)."""
        return int(self.x.shape[0])


@lru_cache(maxsize=1)
def digit_images() -> tuple[Tensor, Tensor]:
    """All of ``load_digits``: images (1797, 8, 8) float in [0, 1] and labels (1797,) long.

    Needs scikit-learn (``pip install 'attnkit[vision]'``); nothing is downloaded (the data ships in it).
    """
    datasets = require("sklearn", purpose="the digits tasks").datasets
    d = datasets.load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32) / _PIXEL_MAX  # (N, 8, 8)
    return x, torch.as_tensor(d.target, dtype=torch.long)


def stratified_split(labels: Tensor, *, seed: int, valid: float = _VALID,
                     test: float = _TEST) -> dict[str, Tensor]:
    """Split -> indices: each class cut in the same proportions (round(n_c · test) to test, round(n_c ·
    valid) to valid, the rest to train) after a permutation drawn from ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    out: dict[str, list[Tensor]] = {s: [] for s in SPLITS}
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).squeeze(1)
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        n_test, n_valid = round(idx.numel() * test), round(idx.numel() * valid)
        out["test"].append(idx[:n_test])
        out["valid"].append(idx[n_test:n_test + n_valid])
        out["train"].append(idx[n_test + n_valid:])
    return {s: torch.cat(v).sort().values for s, v in out.items()}


def place(canvas: Tensor, patches: Tensor, top: Tensor, left: Tensor) -> Tensor:
    """Paste ``patches`` (N, h, w) into ``canvas`` (N, H, W) with their top-left corners at (``top``,
    ``left``) (N,) by pixelwise max (a digit over clutter keeps its strokes); returns ``canvas``."""
    n, h, w = patches.shape
    rows = (top.view(n, 1, 1) + torch.arange(h).view(1, h, 1)).expand(n, h, w)  # (N, h, w)
    cols = (left.view(n, 1, 1) + torch.arange(w).view(1, 1, w)).expand(n, h, w)  # (N, h, w)
    rows_n = torch.arange(n).view(n, 1, 1).expand(n, h, w)
    canvas[rows_n, rows, cols] = torch.maximum(canvas[rows_n, rows, cols], patches)
    return canvas


class ImageTask(Task):
    """Image classification: fixed ``valid`` / ``test`` images, ``train`` images from :meth:`train_images`.

    ``evaluate(model, split)`` reads ``model(x).logits`` (B, num_classes) in eval mode and reports
    accuracy (the primary metric), error rate and cross-entropy.
    """

    kind = "image"
    primary_metric = "accuracy"
    higher_is_better = True

    def __init__(self, *, name: str, images: Tensor, labels: Tensor, split: dict[str, Tensor],
                 options: dict[str, Any]) -> None:
        self.name = name
        self.options = options
        self.seed = int(options.get("seed", 0))
        self.digits = {s: images[split[s]] for s in SPLITS}  # (N_s, 8, 8) the digits of each split
        self.digit_labels = {s: labels[split[s]] for s in SPLITS}
        self.num_classes = len(CLASS_NAMES)
        self.class_names = CLASS_NAMES
        self.channels = 1
        self.image_size = DIGIT_SIZE
        self._fixed: dict[str, tuple[Tensor, Tensor]] = {}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={self.digits[s].shape[0]}" for s in SPLITS)
        return f"{type(self).__name__}({self.name!r}, {self.image_size}x{self.image_size}, digits {sizes})"

    def train_images(self, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The training images of one epoch (B, C, H, W) and their labels; the digits themselves here."""
        return self.digits["train"].unsqueeze(1), self.digit_labels["train"]

    def images(self, split: str) -> tuple[Tensor, Tensor]:
        """(images (N, C, H, W), labels (N,)) of a split (``train``: the epoch drawn from the seed)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if split not in self._fixed:
            if split == "train":
                self._fixed[split] = self.train_images(torch.Generator().manual_seed(self.seed))
            else:
                self._fixed[split] = (self.digits[split].unsqueeze(1), self.digit_labels[split])
        return self._fixed[split]

    def batches(self, split: str, batch_size: int, *, generator: torch.Generator | None = None,
                shuffle: bool | None = None) -> Iterator[ImageBatch]:
        """One pass over ``split``; ``train`` is drawn and shuffled by ``generator`` (same state, same batches)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if shuffle is None:
            shuffle = split == "train"
        if split == "train" and generator is not None:
            x, y = self.train_images(generator)
        else:
            x, y = self.images(split)
        order = torch.randperm(x.shape[0], generator=generator) if shuffle else torch.arange(x.shape[0])
        for i in range(0, x.shape[0], batch_size):
            j = order[i:i + batch_size]
            yield ImageBatch(x[j], y[j], j)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, split: str = "valid", *, max_examples: int | None = None,
                 batch_size: int = 500, device: torch.device | str | None = None, **_: Any) -> dict[str, float]:
        """Accuracy, error rate and mean cross-entropy of ``model`` on ``split`` (the first ``max_examples``)."""
        x, y = self.images(split)
        if max_examples:
            x, y = x[:max_examples], y[:max_examples]
        was_training = model.training
        model.eval()
        device = device or next(model.parameters()).device
        right, loss = 0, 0.0
        try:
            for i in range(0, x.shape[0], batch_size):
                xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
                logits = model(xb).logits  # (B, classes)
                loss += float(F.cross_entropy(logits, yb, reduction="sum"))
                right += int((logits.argmax(-1) == yb).sum())
        finally:
            model.train(was_training)
        n = max(int(x.shape[0]), 1)
        return {"accuracy": right / n, "error_rate": 1 - right / n, "loss": loss / n, "examples": float(x.shape[0])}


class CanvasTask(ImageTask):
    """Digits on a ``canvas`` x ``canvas`` black image at random places, with ``clutter`` fragments."""

    def __init__(self, *, canvas: int, placements: int, clutter: int, fragment_min: int, fragment_max: int,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.image_size = canvas
        self.placements, self.clutter = placements, clutter
        self.fragment = (fragment_min, fragment_max)

    def draw(self, split: str, repeats: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Every digit of ``split`` ``repeats`` times on its own canvas: images (N, 1, S, S), labels (N,)."""
        digits, labels = self.digits[split].repeat(repeats, 1, 1), self.digit_labels[split].repeat(repeats)
        n, S, D = digits.shape[0], self.image_size, DIGIT_SIZE
        canvas = torch.zeros(n, S, S)
        lo, hi = self.fragment
        pool = self.digits[split]
        for _ in range(self.clutter):  # clutter first: the digit is pasted over it
            src = torch.randint(0, pool.shape[0], (n,), generator=generator)
            h = torch.randint(lo, hi + 1, (n,), generator=generator)
            w = torch.randint(lo, hi + 1, (n,), generator=generator)
            r0 = (torch.rand(n, generator=generator) * (D - h + 1)).long()  # crop corner inside the digit
            c0 = (torch.rand(n, generator=generator) * (D - w + 1)).long()
            rows = (r0.view(n, 1) + torch.arange(hi).view(1, hi)).clamp(max=D - 1)  # (N, hi)
            cols = (c0.view(n, 1) + torch.arange(hi).view(1, hi)).clamp(max=D - 1)  # (N, hi)
            frag = pool[src.view(n, 1, 1), rows.view(n, hi, 1), cols.view(n, 1, hi)]  # (N, hi, hi)
            ar = torch.arange(hi)
            keep = (ar.view(1, hi, 1) < h.view(n, 1, 1)) & (ar.view(1, 1, hi) < w.view(n, 1, 1))  # (N, hi, hi)
            frag = frag * keep  # (N, hi, hi): the h x w fragment, zero outside it
            top = torch.randint(0, S - hi + 1, (n,), generator=generator)
            left = torch.randint(0, S - hi + 1, (n,), generator=generator)
            place(canvas, frag, top, left)
        top = torch.randint(0, S - D + 1, (n,), generator=generator)
        left = torch.randint(0, S - D + 1, (n,), generator=generator)
        place(canvas, digits, top, left)
        return canvas.unsqueeze(1), labels  # (N, 1, S, S)

    def train_images(self, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.draw("train", 1, generator)

    def images(self, split: str) -> tuple[Tensor, Tensor]:
        if split in ("valid", "test") and split not in self._fixed:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + SPLITS.index(split) + 7919)
            self._fixed[split] = self.draw(split, self.placements, g)
        return super().images(split)


def _check_int(task: str, name: str, value: int, lo: int, hi: int, fix: str) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"task {task!r}: {name}={value} is impossible; {fix}")


@register_task("digits")
def digits(*, seed: int = 0) -> ImageTask:
    """scikit-learn's 8x8 digits, a stratified train/valid/test split (70/10/20 %) drawn from ``seed``."""
    images, labels = digit_images()
    return ImageTask(name="digits", images=images, labels=labels, split=stratified_split(labels, seed=seed),
                     options={"seed": seed})


def _canvas_task(name: str, *, seed: int, canvas: int, placements: int, clutter: int, fragment_min: int,
                 fragment_max: int) -> CanvasTask:
    _check_int(name, "canvas", canvas, DIGIT_SIZE, 512,
               f"a canvas holds an {DIGIT_SIZE}x{DIGIT_SIZE} digit: use {DIGIT_SIZE} <= canvas <= 512 (e.g. 32)")
    _check_int(name, "placements", placements, 1, 100, "use 1 <= placements <= 100 canvases per valid/test digit")
    _check_int(name, "clutter", clutter, 0, 64, "use 0 <= clutter <= 64 fragments per canvas")
    _check_int(name, "fragment_min", fragment_min, 1, DIGIT_SIZE,
               f"fragments are crops of an {DIGIT_SIZE}x{DIGIT_SIZE} digit: use 1 <= fragment_min <= fragment_max <= "
               f"{DIGIT_SIZE}")
    _check_int(name, "fragment_max", fragment_max, fragment_min, min(DIGIT_SIZE, canvas),
               f"use fragment_min ({fragment_min}) <= fragment_max <= {min(DIGIT_SIZE, canvas)} (digit and canvas)")
    images, labels = digit_images()
    opts = {"seed": seed, "canvas": canvas, "placements": placements}
    if name == "cluttered-digits":
        opts.update(clutter=clutter, fragment_min=fragment_min, fragment_max=fragment_max)
    return CanvasTask(name=name, images=images, labels=labels, split=stratified_split(labels, seed=seed),
                      options=opts, canvas=canvas, placements=placements, clutter=clutter,
                      fragment_min=fragment_min, fragment_max=fragment_max)


@register_task("translated-digits")
def translated_digits(*, seed: int = 0, canvas: int = 32, placements: int = 4) -> CanvasTask:
    """Each digit at a random place on a ``canvas`` x ``canvas`` image (valid/test: ``placements`` per digit)."""
    return _canvas_task("translated-digits", seed=seed, canvas=canvas, placements=placements, clutter=0,
                        fragment_min=3, fragment_max=4)


@register_task("cluttered-digits")
def cluttered_digits(*, seed: int = 0, canvas: int = 32, placements: int = 4, clutter: int = 4,
                     fragment_min: int = 3, fragment_max: int = 4) -> CanvasTask:
    """``translated-digits`` plus ``clutter`` fragments (crops of other digits, ``fragment_min..fragment_max``
    pixels a side) per canvas."""
    return _canvas_task("cluttered-digits", seed=seed, canvas=canvas, placements=placements, clutter=clutter,
                        fragment_min=fragment_min, fragment_max=fragment_max)
