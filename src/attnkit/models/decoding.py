"""Decoding for every sequence model: greedy search, beam search and sampling.

A model decodes through two functions over a state it alone understands:

* ``step(state, last_tokens (B,)) -> (scores (B, V), state, extra)``: feed the
  last token of each row, return scores over the vocabulary, the next state, and
  an optional per-row tensor ``extra`` (B, ...) kept along each hypothesis (the
  RNN's and the Transformer's cross-attention weights (B, S), for alignments);
* ``reorder(state, index (N,)) -> state``: keep rows ``index`` of every batched
  tensor of the state (beam search: the beams that survive; the first call
  repeats each source row ``beam_size`` times).

Beam search needs ``scores`` to be log-probabilities; greedy search and sampling
only compare or normalise them per row, so a language model may return logits.

Beam search (Sutskever et al. 2014, arXiv:1409.3215; Wu et al. 2016,
arXiv:1609.08144 for the length normalisation) ranks a finished hypothesis
``y`` (EOS included) by ``log p(y | x) / |y| ** length_penalty``. The default
``length_penalty=0`` ranks by the raw log-probability: log p is negative, so
dividing it by a length favours the longer of two hypotheses (with 1, a
hypothesis of 8 tokens at log p = -1.6 beats one of 2 tokens at -0.5), which on
short outputs adds characters the model itself finds less likely. It stops
when every source holds ``beam_size`` finished hypotheses that no live beam
can still beat: log p only falls as a beam grows, so a live beam's best
normalised score is bounded by its score now spread over ``max_len`` tokens.

Sampling draws from ``softmax(scores / temperature)`` after top-k (Fan et al.
2018, arXiv:1805.04833) and nucleus / top-p (Holtzman et al. 2019,
arXiv:1904.09751) filtering; ``temperature=0`` is greedy.

Shape legend: B batch (sources), K beam, N = B·K rows, V vocabulary.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch
from torch import Tensor

__all__ = [
    "StepFn",
    "ReorderFn",
    "Hypothesis",
    "greedy_search",
    "beam_search",
    "sample",
    "sample_next",
    "filter_logits",
    "select_state",
]

#: ``step(state, last_tokens (B,)) -> (scores (B, V), state, extra (B, ...) or None)``
StepFn = Callable[[Any, Tensor], tuple[Tensor, Any, Optional[Tensor]]]
#: ``reorder(state, index (N,)) -> state`` with rows ``index`` of every batched tensor
ReorderFn = Callable[[Any, Tensor], Any]


class Hypothesis(NamedTuple):
    """One decoded sequence.

    ``tokens``: without BOS and EOS. ``score``: its log-probability (beam search: normalised by
    length). ``extras``: the step extras (T, ...) of every step that produced one of its tokens,
    the EOS step included when it ``finished``; None when the step returns none.
    """

    tokens: list[int]
    score: float
    extras: Optional[Tensor]
    finished: bool


def select_state(state: Any, index: Tensor) -> Any:
    """Every tensor in a (nested) state indexed along its batch dimension (beam reordering)."""
    if isinstance(state, Tensor):
        return state.index_select(0, index)
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(select_state(s, index) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(select_state(s, index) for s in state)
    if isinstance(state, dict):
        return {k: select_state(v, index) for k, v in state.items()}
    return state


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_length_penalty(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(f"length_penalty must be a finite number >= 0 (0 = raw log-probability), got {value!r}")


def greedy_search(step: StepFn, state: Any, *, batch_size: int, max_len: int, bos: int, eos: int,
                  device: torch.device | str | None = None) -> list[Hypothesis]:
    """The most likely token at each step, for ``max_len`` steps or until every row wrote ``eos``."""
    _check_positive("max_len", max_len)
    B = batch_size
    y = torch.full((B,), bos, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    total = torch.zeros(B, device=device)
    toks, extras = [], []
    for _ in range(max_len):
        scores, state, extra = step(state, y)  # (B, V)
        y = scores.argmax(-1)  # (B,)
        total = total + scores.gather(1, y[:, None]).squeeze(1).float().masked_fill(done, 0.0)
        toks.append(y)
        extras.append(extra)
        done = done | (y == eos)
        if bool(done.all()):
            break
    ids = torch.stack(toks, 1).tolist()  # (B, T)
    ex = torch.stack(extras, 1) if extras[0] is not None else None  # (B, T, ...)
    out = []
    for b in range(B):
        row = ids[b]
        finished = eos in row
        n = row.index(eos) if finished else len(row)
        out.append(Hypothesis(row[:n], float(total[b]), None if ex is None else ex[b, : n + finished], finished))
    return out


def normalised_score(log_p: float, length: int, length_penalty: float) -> float:
    """The beam's rank of a hypothesis of ``length`` tokens (EOS included): ``log p / length ** length_penalty``."""
    return log_p / (max(length, 1) ** length_penalty)


def beam_search(step: StepFn, reorder: ReorderFn, state: Any, *, batch_size: int, beam_size: int, max_len: int,
                bos: int, eos: int, length_penalty: float = 0.0,
                device: torch.device | str | None = None) -> list[Hypothesis]:
    """The best of ``beam_size`` hypotheses per source, all B·K beams stepping together.

    ``state`` holds ``batch_size`` rows; it is expanded to B·K with ``reorder``. A
    hypothesis leaves the beam when it writes ``eos``, scored ``log p / len ** length_penalty``
    (``len`` counts the EOS; 0 = raw log-probability). Without a finished hypothesis within
    ``max_len`` the best live beam is returned.
    """
    _check_positive("beam_size", beam_size)
    _check_positive("max_len", max_len)
    _check_length_penalty(length_penalty)
    B, K = batch_size, beam_size
    rep = torch.arange(B, device=device).repeat_interleave(K)  # (N,)
    state = reorder(state, rep)
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # the K beams of a source start identical: expand only the first
    y = torch.full((B * K,), bos, dtype=torch.long, device=device)
    hist_tok = torch.zeros(B * K, 0, dtype=torch.long, device=device)  # (N, t)
    hist_ex: Optional[Tensor] = None  # (N, t, ...)
    finished: list[list[tuple[float, list[int], Optional[Tensor]]]] = [[] for _ in range(B)]

    def norm(score: float, length: int) -> float:
        return normalised_score(score, length, length_penalty)

    for t in range(max_len):
        logp, state, extra = step(state, y)  # (N, V)
        V = logp.shape[-1]
        if extra is not None and hist_ex is None:
            hist_ex = extra.new_zeros(B * K, 0, *extra.shape[1:])
        total = (scores.view(-1, 1) + logp).view(B, K * V)  # (B, K*V)
        top, idx = total.topk(min(2 * K, K * V), dim=-1)  # (B, 2K)
        beam, tok = (idx // V).tolist(), (idx % V).tolist()
        top_l = top.tolist()
        new_rows, new_scores, new_tok = [], [], []
        for b in range(B):
            live = []
            for j in range(len(top_l[b])):
                sc = top_l[b][j]
                if sc == float("-inf"):
                    break
                row = b * K + beam[b][j]
                if tok[b][j] == eos:
                    ex = None if hist_ex is None else torch.cat([hist_ex[row], extra[row : row + 1]], 0)  # (t+1, ...)
                    finished[b].append((norm(sc, t + 1), hist_tok[row].tolist(), ex))
                else:
                    live.append((row, sc, tok[b][j]))
                if len(live) == K:
                    break
            while len(live) < K:  # keep the shape: pad with dead beams
                live.append((b * K, float("-inf"), eos))
            for row, sc, tk in live:
                new_rows.append(row)
                new_scores.append(sc)
                new_tok.append(tk)
        rows = torch.tensor(new_rows, device=device)
        scores = torch.tensor(new_scores, device=device).view(B, K)
        y = torch.tensor(new_tok, device=device)
        hist_tok = torch.cat([hist_tok[rows], y[:, None]], 1)
        if hist_ex is not None:
            hist_ex = torch.cat([hist_ex[rows], extra[rows][:, None]], 1)
        state = reorder(state, rows)
        best_live = scores.max(dim=1).values.tolist()  # (B,)
        if all(
            bl == float("-inf")
            or len(f) >= K and norm(bl, max_len) <= sorted(x[0] for x in f)[-K]
            for f, bl in zip(finished, best_live)
        ):
            break
    out = []
    for b in range(B):
        if finished[b]:
            sc, toks, ex = max(finished[b], key=lambda x: x[0])
            out.append(Hypothesis(toks, sc, ex, True))
        else:  # nothing wrote EOS within max_len: the best live beam
            row = b * K
            ex = None if hist_ex is None else hist_ex[row]
            out.append(Hypothesis(hist_tok[row].tolist(), norm(float(scores[b, 0]), hist_tok.shape[1]), ex, False))
    return out


# -- sampling --------------------------------------------------------------------------------------
def search(step: StepFn, reorder: ReorderFn, state: Any, *, batch_size: int, beam_size: int, max_len: int,
           bos: int, eos: int, length_penalty: float = 0.0,
           device: torch.device | str | None = None) -> list[Hypothesis]:
    """What a sequence model's ``generate`` calls: :func:`greedy_search` for ``beam_size=1``,
    :func:`beam_search` otherwise (same arguments, same stopping rule and length penalty)."""
    _check_positive("beam_size", beam_size)
    _check_positive("max_len", max_len)
    if beam_size == 1:
        return greedy_search(step, state, batch_size=batch_size, max_len=max_len, bos=bos, eos=eos, device=device)
    return beam_search(step, reorder, state, batch_size=batch_size, beam_size=beam_size, max_len=max_len, bos=bos,
                       eos=eos, length_penalty=length_penalty, device=device)


def filter_logits(logits: Tensor, *, top_k: Optional[int] = None, top_p: Optional[float] = None) -> Tensor:
    """Logits (B, V) with everything outside the top-k / the top-p nucleus set to -inf.

    top-k keeps the k largest (Fan et al. 2018, arXiv:1805.04833); top-p keeps
    the smallest set whose probability reaches p (Holtzman et al. 2019,
    arXiv:1904.09751). The most likely token always survives.
    """
    if top_k is not None:
        _check_positive("top_k", top_k)
        k = min(top_k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # probability mass ranked above each token
        drop_sorted = before >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(logits: Tensor, *, temperature: float = 1.0, top_k: Optional[int] = None,
                top_p: Optional[float] = None, generator: Optional[torch.Generator] = None) -> Tensor:
    """Next ids (B,) from last-position logits (B, V): greedy when ``temperature == 0``."""
    if not isinstance(temperature, (int, float)) or temperature < 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if temperature == 0:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / temperature, top_k=top_k, top_p=top_p)
    probs = logits.softmax(-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)


def sample(step: StepFn, state: Any, last_tokens: Tensor, *, max_new_tokens: int, temperature: float = 1.0,
           top_k: Optional[int] = None, top_p: Optional[float] = None, generator: Optional[torch.Generator] = None,
           suppress_ids: Optional[Sequence[int] | Tensor] = None) -> Tensor:
    """``max_new_tokens`` ids (B, new) drawn one at a time, starting by feeding ``last_tokens`` (B,).

    ``suppress_ids`` are never drawn (their scores are set to -inf before filtering).
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    banned = None if suppress_ids is None or len(suppress_ids) == 0 else torch.as_tensor(
        suppress_ids, dtype=torch.long, device=last_tokens.device)
    y = last_tokens
    out = []
    for _ in range(max_new_tokens):
        scores, state, _ = step(state, y)  # (B, V)
        if banned is not None:
            scores = scores.index_fill(-1, banned, float("-inf"))
        y = sample_next(scores, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)  # (B,)
        out.append(y)
    if not out:
        return last_tokens.new_zeros(last_tokens.shape[0], 0)
    return torch.stack(out, 1)  # (B, new)
