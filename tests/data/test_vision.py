"""The image tasks (attnkit/data/vision.py): splits, placement by hand, determinism, disjointness, errors."""

from __future__ import annotations

import pytest
import torch

from attnkit.data import get_task
from attnkit.data.vision import DIGIT_SIZE, digit_images, place, stratified_split

pytest.importorskip("sklearn")


def test_place_pastes_by_pixelwise_max_by_hand():
    canvas = torch.zeros(1, 4, 4)
    canvas[0, 1, 2] = 5.0  # clutter under the patch: the max keeps it
    place(canvas, torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]), torch.tensor([1]), torch.tensor([2]))
    want = torch.tensor([[0, 0, 0, 0], [0, 0, 5, 2], [0, 0, 3, 4], [0, 0, 0, 0]], dtype=torch.float32)
    assert torch.equal(canvas[0], want)


def test_stratified_split_is_disjoint_proportional_and_seeded():
    labels = torch.tensor([0] * 10 + [1] * 20)
    a = stratified_split(labels, seed=0, valid=0.1, test=0.2)
    # class 0: 2 test, 1 valid, 7 train; class 1: 4 test, 2 valid, 14 train
    assert [a[s].numel() for s in ("train", "valid", "test")] == [21, 3, 6]
    assert torch.bincount(labels[a["test"]]).tolist() == [2, 4]
    allidx = torch.cat([a["train"], a["valid"], a["test"]])
    assert sorted(allidx.tolist()) == list(range(30))
    assert all(torch.equal(a[s], stratified_split(labels, seed=0, valid=0.1, test=0.2)[s]) for s in a)
    assert not torch.equal(a["test"], stratified_split(labels, seed=1, valid=0.1, test=0.2)["test"])


def test_digits_task_sizes_values_and_stratification():
    task = get_task("digits")
    x, y = task.images("test")
    assert x.shape == (359, 1, 8, 8) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.bincount(y).tolist() == [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]  # round(20 % of each class)
    sizes = {s: task.images(s)[0].shape[0] for s in ("train", "valid", "test")}
    assert sum(sizes.values()) == 1797 and sizes["valid"] == 179
    b = next(task.batches("train", 32, generator=torch.Generator().manual_seed(3)))
    b2 = next(task.batches("train", 32, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(b.x, b2.x) and b.x.shape == (32, 1, 8, 8) and b.num_tokens == 32


def test_splits_share_no_digit_and_a_test_canvas_holds_a_test_digit():
    assert digit_images()[0].shape == (1797, 8, 8)
    task = get_task("translated-digits", canvas=16)
    flat = {s: task.digits[s].flatten(1) for s in ("train", "valid", "test")}
    assert not bool((torch.cdist(flat["train"], flat["test"]) == 0).any())  # no test digit in training
    x, y = task.images("test")
    windows = x[:12, 0].unfold(1, DIGIT_SIZE, 1).unfold(2, DIGIT_SIZE, 1).reshape(12, -1, DIGIT_SIZE**2)
    for i in range(12):  # each canvas holds one test digit of its class, intact, and nothing else
        d = torch.cdist(windows[i], flat["test"])  # (positions, test digits)
        hit = torch.nonzero(d == 0)
        assert hit.numel() > 0 and int(task.digit_labels["test"][hit[0, 1]]) == int(y[i])
        assert float(x[i].sum()) == pytest.approx(float(flat["test"][hit[0, 1]].sum()))


def test_canvas_images_are_seeded_and_each_epoch_moves_the_digits():
    a, b = get_task("translated-digits"), get_task("translated-digits")
    assert torch.equal(a.images("test")[0], b.images("test")[0])
    assert a.images("test")[0].shape == (359 * 4, 1, 32, 32)
    assert not torch.equal(a.images("test")[0], get_task("translated-digits", seed=1).images("test")[0])
    e0 = a.train_images(torch.Generator().manual_seed(0))[0]
    e1 = a.train_images(torch.Generator().manual_seed(1))[0]
    assert torch.allclose(e0.sum((1, 2, 3)), e1.sum((1, 2, 3)))  # the same digits ...
    assert not torch.equal(e0, e1)  # ... at other places


def test_clutter_adds_fragments_and_none_is_the_translated_task():
    plain = get_task("translated-digits").images("test")[0]
    assert torch.equal(get_task("cluttered-digits", clutter=0).images("test")[0], plain)
    clut = get_task("cluttered-digits").images("test")[0]
    extra = clut.sum((1, 2, 3)) - plain.sum((1, 2, 3))
    assert float(extra.mean()) > 0.5  # four fragments of 3x3..4x4 pixels add ink
    assert float(clut.max()) <= 1.0


def test_impossible_canvas_and_fragment_options_name_the_argument():
    with pytest.raises(ValueError, match=r"canvas=7 is impossible.*8 <= canvas"):
        get_task("translated-digits", canvas=7)
    with pytest.raises(ValueError, match="fragment_max=9 is impossible"):
        get_task("cluttered-digits", fragment_max=9)
    with pytest.raises(ValueError, match="placements=0 is impossible"):
        get_task("translated-digits", placements=0)
    with pytest.raises(ValueError, match="has no option 'clutter'"):
        get_task("translated-digits", clutter=2)
