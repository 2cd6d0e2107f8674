"""Tasks, vocabularies and metrics: hand-computed numbers, determinism, disjoint splits, errors."""

from __future__ import annotations

import pytest
import torch

from attnkit.data import BOS, EOS, PAD, UNK, Vocab, edit_distance, get_task, list_tasks, sequence_metrics
from attnkit.data.base import OPTION_LIMITS, _check_option_bound
from attnkit.data.metrics import chrf, closest_reference


# -- vocabulary ------------------------------------------------------------------------------
def test_vocab_char_round_trip_and_specials():
    v = Vocab.build(["ab", "ba", "c"])
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assert v.itos == ["<pad>", "<s>", "</s>", "<unk>", "a", "b", "c"]
    assert v.encode("cab") == [6, 4, 5]
    assert v.decode([6, 4, 5, EOS, 4]) == "cab"  # stops at EOS
    assert v.decode([BOS, 4, PAD]) == "a"
    assert v.encode("xa") == [UNK, 4]
    assert Vocab.from_json(v.to_json()) == v


def test_vocab_symbols_split_on_spaces():
    v = Vocab.build(["AH T EH N", "SH AH N"], kind="symbol")
    assert v.encode("SH AH N") == [v.stoi["SH"], v.stoi["AH"], v.stoi["N"]]
    assert v.decode(v.encode("AH T")) == "AH T"


def test_vocab_strict_names_unknown_characters():
    v = Vocab.build(["abc"])
    with pytest.raises(ValueError, match=r"'x', 'é' not in the vocabulary"):
        v.encode("axéx", strict=True)
    with pytest.raises(ValueError, match="special tokens"):
        Vocab(["a", "b"])


# -- metrics ---------------------------------------------------------------------------------
def test_edit_distance_by_hand():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance(["AH", "T"], ["AH", "T"]) == 0
    assert closest_reference(list("abd"), [list("xyz"), list("abc")]) == (1, list("abc"))


def test_sequence_metrics_by_hand():
    # two examples: "ab" vs ref "ab" (0 edits), "xbc" vs refs {"abcd", "bc"} -> closest "bc" (1 edit)
    m = sequence_metrics([list("ab"), list("xbc")], [[list("ab")], [list("abcd"), list("bc")]], words="sequence")
    assert m["exact_match"] == 0.5
    assert m["token_error_rate"] == pytest.approx(1 / 4)  # 1 edit over 2 + 2 reference tokens
    assert m["word_error_rate"] == 0.5
    # word error rate on text: "one two" vs "one three" -> 1 of 2 words
    m = sequence_metrics([list("one two")], [[list("one three")]], words="split")
    assert m["word_error_rate"] == 0.5
    assert chrf(["dreiundvierzig"], ["dreiundvierzig"]) == pytest.approx(100.0)


# -- tasks -----------------------------------------------------------------------------------
def test_registry_lists_valid_names():
    assert {"numbers", "dates", "g2p", "copy", "reverse", "sort"} <= set(list_tasks())
    with pytest.raises(ValueError, match="did you mean 'numbers'.*valid tasks:.*dates"):
        get_task("nubmers")
    with pytest.raises(ValueError, match="no option 'hgh'.*high"):
        get_task("numbers", hgh=3)


SMALL = {
    "numbers": dict(high=300, valid=20, test=30),
    "dates": dict(train=300, valid=20, test=30),
    "reverse": dict(train=300, valid=20, test=30),
    "sort": dict(train=300, valid=20, test=30),
    "copy": dict(train=300, valid=20, test=30),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_splits_deterministic_and_disjoint(name):
    a, b = get_task(name, seed=1, **SMALL[name]), get_task(name, seed=1, **SMALL[name])
    c = get_task(name, seed=2, **SMALL[name])
    for s in ("train", "valid", "test"):
        assert [(e.src, e.tgts) for e in a.splits[s]] == [(e.src, e.tgts) for e in b.splits[s]]
    assert [e.src for e in a.splits["test"]] != [e.src for e in c.splits["test"]]
    key = (lambda e: e.tgts[0]) if name == "dates" else (lambda e: e.src)  # dates: held-out calendar days
    train = {key(e) for e in a.splits["train"]}
    assert not train & {key(e) for e in a.splits["test"]}
    assert not train & {key(e) for e in a.splits["valid"]}


def test_numbers_task_content():
    t = get_task("numbers", high=99, valid=10, test=10)
    pairs = {e.src: e.tgts[0] for s in ("train", "valid", "test") for e in t.splits[s]}
    assert pairs["forty-three"] == "dreiundvierzig"
    assert pairs["seven"] == "sieben"
    assert len(pairs) == 100
    assert sorted(t.numbers["train"] + t.numbers["valid"] + t.numbers["test"]) == list(range(100))


def test_dates_and_synthetic_targets():
    t = get_task("dates", train=50, valid=5, test=5)
    for e in t.splits["train"]:
        assert len(e.tgts[0]) == 10 and e.tgts[0][4] == e.tgts[0][7] == "-"
    r = get_task("reverse", **SMALL["reverse"])
    assert all(e.tgts[0] == e.src[::-1] for e in r.splits["test"])
    s = get_task("sort", **SMALL["sort"])
    assert all(e.tgts[0] == "".join(sorted(e.src)) for e in s.splits["test"])


def test_g2p_strips_stress_and_keeps_every_pronunciation():
    from attnkit.data.g2p import cmu_entries

    entries = dict(cmu_entries())
    assert entries["attention"] == ("AH T EH N SH AH N",)
    assert len(entries["tomato"]) >= 2  # T AH M EY T OW and T AH M AA T OW
    assert not any(ch.isdigit() for p in entries["read"] for ch in p)
    t = get_task("g2p", limit=3000, valid=100, test=200)
    assert t.tgt_vocab.kind == "symbol" and "AH" in t.tgt_vocab.stoi and "AH0" not in t.tgt_vocab.stoi
    assert not {e.src for e in t.splits["train"]} & {e.src for e in t.splits["test"]}


def test_batches_pad_shift_and_follow_the_generator():
    t = get_task("reverse", **SMALL["reverse"])
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    b1 = next(t.batches("train", 8, generator=g()))
    b2 = next(t.batches("train", 8, generator=g()))
    assert torch.equal(b1.src, b2.src)
    assert b1.src.shape[0] == 8 and b1.tgt_in.shape == b1.tgt_out.shape
    assert (b1.tgt_in[:, 0] == BOS).all()
    for i in range(8):
        n = int(b1.tgt_lengths[i])
        assert b1.tgt_out[i, n - 1] == EOS and (b1.tgt_out[i, n:] == PAD).all()
        assert torch.equal(b1.tgt_in[i, 1:n], b1.tgt_out[i, : n - 1])  # shifted by one
        assert int(b1.src_lengths[i]) == int((b1.src[i] != PAD).sum())
    n = sum(len(b) for b in t.batches("train", 64, generator=g()))
    assert n == 300


def test_encode_source_names_out_of_vocabulary_characters():
    t = get_task("numbers", high=99, valid=10, test=10)
    assert t.encode_source("  Forty-Three ") == t.src_vocab.encode("forty-three")
    with pytest.raises(ValueError, match=r"'4', '3' not in the vocabulary"):
        t.encode_source("43")


@pytest.mark.parametrize("option, value", [("max_len", 100_000), ("train", 10**9)])
def test_an_unbounded_task_option_is_refused_at_once_naming_the_bound(option, value):
    """``--task-option max_len=100000`` used to hang (it counted 20**100000 strings); now the bound is named."""
    bound = OPTION_LIMITS["length" if option.endswith("_len") else "number"]
    with pytest.raises(ValueError, match=rf"{option}={value} is beyond the bound {bound}"):
        get_task("reverse", **{option: value})


def test_the_bound_itself_is_accepted_by_the_check():
    _check_option_bound("reverse", "max_len", OPTION_LIMITS["length"])  # no error at the bound
    _check_option_bound("reverse", "seed", 10**12)  # seeds have their own bound (train.checkpoint.LIMITS)
