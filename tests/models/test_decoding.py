"""attnkit.models.decoding on a two-token Markov chain whose best sequences are worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from attnkit.models.decoding import Hypothesis, beam_search, greedy_search, sample

PAD, BOS, EOS, A = 0, 1, 2, 3
#: p(next | last): after BOS, EOS 0.45 / A 0.55; after A, EOS 0.6 / A 0.4
TABLE = torch.tensor([
    [0.25, 0.25, 0.25, 0.25],
    [0.0, 0.0, 0.45, 0.55],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.6, 0.4],
]).log()


def step(state, last):
    """Stateless: the scores depend on the last token only; the extra is the token fed (B, 1)."""
    return TABLE[last], state, last.float()[:, None]


def reorder(state, index):
    return state


def test_greedy_takes_the_likelier_first_token():
    [h] = greedy_search(step, None, batch_size=1, max_len=5, bos=BOS, eos=EOS)
    assert h == Hypothesis([A], pytest.approx(math.log(0.55 * 0.6)), h.extras, True)
    assert h.extras.tolist() == [[BOS], [A]]  # one row per step, the EOS step included


def test_beam_with_raw_log_probability_prefers_the_empty_output():
    # p([]) = 0.45 beats greedy's p([A]) = 0.55 * 0.6 = 0.33
    [h] = beam_search(step, reorder, None, batch_size=1, beam_size=2, max_len=5, bos=BOS, eos=EOS, length_penalty=0.0)
    assert h.tokens == [] and h.finished and h.score == pytest.approx(math.log(0.45))
    assert h.extras.tolist() == [[BOS]]


def test_length_normalisation_prefers_the_longer_output():
    # log(0.45) / 1 = -0.80 < log(0.33) / 2 = -0.55
    [h] = beam_search(step, reorder, None, batch_size=1, beam_size=2, max_len=5, bos=BOS, eos=EOS, length_penalty=1.0)
    assert h.tokens == [A] and h.score == pytest.approx(math.log(0.33) / 2)
    assert h.extras.tolist() == [[BOS], [A]]


def test_a_batch_decodes_each_row_alone_and_max_len_bounds_it():
    hyps = beam_search(step, reorder, None, batch_size=3, beam_size=2, max_len=5, bos=BOS, eos=EOS, length_penalty=0.0)
    assert [h.tokens for h in hyps] == [[], [], []]
    def never_ends(s, y):
        return TABLE[torch.full_like(y, A)].index_fill(-1, torch.tensor([EOS]), -math.inf), s, None

    [h] = greedy_search(never_ends, None, batch_size=1, max_len=4, bos=BOS, eos=EOS)
    assert h.tokens == [A] * 4 and not h.finished and h.extras is None


def test_sampling_at_temperature_zero_is_greedy_and_suppressed_ids_never_come():
    assert sample(step, None, torch.tensor([BOS]), max_new_tokens=3, temperature=0).tolist() == [[A, EOS, EOS]]
    g = torch.Generator().manual_seed(0)
    draws = sample(step, None, torch.tensor([BOS] * 64), max_new_tokens=1, generator=g, suppress_ids=[EOS])
    assert set(draws.flatten().tolist()) == {A}
    assert sample(step, None, torch.tensor([BOS]), max_new_tokens=0).shape == (1, 0)
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 0"):
        sample(step, None, torch.tensor([BOS]), max_new_tokens=-1)
    with pytest.raises(ValueError, match="beam_size must be a positive int"):
        beam_search(step, reorder, None, batch_size=1, beam_size=0, max_len=3, bos=BOS, eos=EOS)


def test_the_default_ranks_by_raw_log_probability():
    """Hand-worked: hypotheses [] (p = 0.45, 1 token with EOS) and [A] (p = 0.55 * 0.6 = 0.33, 2 tokens).
    By log p: -0.799 > -1.109, [] wins. Divided by length (length_penalty=1): -0.799 < -0.554, [A] wins,
    the less likely and longer one; the default is the raw log-probability."""
    [h] = beam_search(step, reorder, None, batch_size=1, beam_size=2, max_len=5, bos=BOS, eos=EOS)
    assert h.tokens == [] and h.score == pytest.approx(-0.798508, abs=1e-6)  # log 0.45
    [h1] = beam_search(step, reorder, None, batch_size=1, beam_size=2, max_len=5, bos=BOS, eos=EOS,
                       length_penalty=1.0)
    assert h1.tokens == [A] and h1.score == pytest.approx(-0.554331, abs=1e-6)  # log(0.33) / 2


@pytest.mark.parametrize("bad", [-0.5, float("inf"), float("nan"), True, "1"])
def test_length_penalty_is_checked(bad):
    with pytest.raises(ValueError, match="length_penalty must be a finite number >= 0"):
        beam_search(step, reorder, None, batch_size=1, beam_size=2, max_len=5, bos=BOS, eos=EOS, length_penalty=bad)
