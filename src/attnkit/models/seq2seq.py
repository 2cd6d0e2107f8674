"""RNN encoder-decoder with attention: Bahdanau et al. 2014 (arXiv:1409.0473) and Luong et al. 2015 (arXiv:1508.04025).

``p(y_t | y_<t, x) = softmax(W_o f(s_t, c_t)),  c_t = Σ_s α_ts h_s,  α_t = attention(query_t, h_1..h_S)``

The encoder is a bidirectional GRU or LSTM; its outputs ``h_s`` (B, S, D)
are the keys and values. Two decoder styles, in the :data:`DECODERS` registry:

* ``bahdanau``: attend with the previous state, then step the RNN on
  ``[y_{t-1}; c_t]``: ``c_t = attn(s_{t-1}, h)``, ``s_t = RNN([y_{t-1}; c_t], s_{t-1})``,
  ``logits = W_o tanh(W_d [s_t; c_t; y_{t-1}])`` (Bahdanau's deep output, tanh for maxout).
* ``luong``: step the RNN, then attend with the new state: ``h_t =
  RNN([y_{t-1}; h~_{t-1}], h_{t-1})`` (input feeding), ``c_t = attn(h_t, h)``,
  ``h~_t = tanh(W_c [c_t; h_t])``, ``logits = W_s h~_t``.

Any sequence mechanism of the :mod:`attnkit.nn` registry plugs in through
``attnkit.nn.create(name, query_dim, key_dim=...)`` and the decoder-style call
of :mod:`attnkit.nn.base` (``step`` = t for local-m/local-p, ``state`` for
content-based addressing). A stochastic hard attention returns ``log_prob``;
``loss`` then adds the REINFORCE term (Xu et al. 2015, arXiv:1502.03044) with
the sequence log-likelihood as reward.

Decoding (greedy, beam search) is :mod:`attnkit.models.decoding` through
:meth:`Seq2Seq.step` / :meth:`Seq2Seq.reorder`.

Shape legend: B batch, S source length, T target length, V vocabulary,
E embedding, D hidden (encoder output = decoder state), K beam.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..data.vocab import BOS, EOS, PAD
from ..nn import create, reinforce_loss
from ..nn.hard import MovingAverageBaseline
from ..nn.registry import resolve
from . import decoding
from .registry import ModelConfig, make_config, register_model

__all__ = ["Seq2Seq", "Seq2SeqConfig", "Encoder", "BahdanauDecoder", "LuongDecoder", "DECODERS", "CELLS"]

#: mechanisms whose parameters are sized by the longest source (Luong's location score: a_t = softmax(W_a h_t))
SIZED_BY_SOURCE = {"luong-location"}

#: cell name -> (sequence RNN class, single-step cell class)
CELLS: dict[str, tuple[type, type]] = {"gru": (nn.GRU, nn.GRUCell), "lstm": (nn.LSTM, nn.LSTMCell)}


def _check_choice(value: Any, name: str, valid: dict) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid {name}s: {', '.join(sorted(valid))}")


class Encoder(nn.Module):
    """Bidirectional RNN over the embedded source: (B, S) ids -> outputs (B, S, D), summary (B, D).

    Each direction has D/2 units, so outputs are D wide; the summary is the
    concatenated final forward and backward states (what initialises the decoder).
    """

    def __init__(
        self, vocab_size: int, *, embed_dim: int, hidden_dim: int, layers: int = 1, cell: str = "gru",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_choice(cell, "cell", CELLS)
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even (two directions of hidden_dim/2), got {hidden_dim}")
        self.cell = cell
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.drop = nn.Dropout(dropout)
        self.rnn = CELLS[cell][0](
            embed_dim, hidden_dim // 2, num_layers=layers, batch_first=True, bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = self.drop(self.embed(src))  # (B, S, E)
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False
        )
        out, h = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])  # (B, S, D)
        if isinstance(h, tuple):
            h = h[0]
        summary = torch.cat([h[-2], h[-1]], dim=-1)  # (B, D): last layer, forward and backward
        return out, summary


class DecoderState(NamedTuple):
    """What one decoder step carries to the next: RNN state, input-feeding vector, attention state."""

    rnn: Any  # (B, D) for GRU, ((B, D), (B, D)) for LSTM
    feed: Optional[Tensor]  # (B, D) attentional state h~ (luong) or None
    attn: Any  # the mechanism's AttentionOutput.state


class StepOutput(NamedTuple):
    logits: Tensor  # (B, V)
    weights: Optional[Tensor]  # (B, S), heads averaged
    log_prob: Optional[Tensor]  # (B,) hard attention's log-probability of its draw
    state: DecoderState


def _hidden(rnn_state: Any) -> Tensor:
    return rnn_state[0] if isinstance(rnn_state, tuple) else rnn_state


def _head_mean(w: Optional[Tensor]) -> Optional[Tensor]:
    """Weights (B, S) or (B, H, S) -> (B, S)."""
    return None if w is None else (w.mean(dim=1) if w.dim() == 3 else w)


def _log_prob_sum(lp: Optional[Tensor]) -> Optional[Tensor]:
    """A hard attention's log-probability (B,) or per head (B, H) -> (B,)."""
    return None if lp is None else lp.reshape(lp.shape[0], -1).sum(-1)  # (B,)


class _Decoder(nn.Module):
    """What both decoder styles share: target embedding, the cell, the attention, the output layer."""

    def __init__(
        self,
        vocab_size: int,
        *,
        embed_dim: int,
        hidden_dim: int,
        cell: str,
        attention: str,
        attention_options: dict[str, Any],
        dropout: float,
        max_source_len: int = 0,
    ) -> None:
        super().__init__()
        if resolve(attention) in SIZED_BY_SOURCE and max_source_len:
            attention_options = {"max_source_len": max_source_len, **attention_options}
        self.cell = cell
        self.hidden_dim = hidden_dim
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.drop = nn.Dropout(dropout)
        self.attention = create(attention, hidden_dim, key_dim=hidden_dim, **attention_options)
        self.context_dim = int(getattr(self.attention, "output_dim", hidden_dim))
        self.rnn = CELLS[cell][1](self.rnn_input_dim(embed_dim, hidden_dim), hidden_dim)
        self.bridge = nn.Linear(hidden_dim, hidden_dim)

    def rnn_input_dim(self, embed_dim: int, hidden_dim: int) -> int:
        """Features of the RNN input at each step (the style decides what is fed)."""
        raise TypeError(f"{type(self).__name__} must say what its RNN reads (rnn_input_dim)")

    def init_state(self, summary: Tensor) -> DecoderState:
        h = torch.tanh(self.bridge(summary))  # (B, D)
        rnn = (h, torch.zeros_like(h)) if self.cell == "lstm" else h
        return DecoderState(rnn, None, None)

    def attend(self, query: Tensor, keys: Tensor, key_allowed: Tensor, t: int, state: Any, need_weights: bool):
        return self.attention(query, keys, key_allowed=key_allowed, step=t, state=state, need_weights=need_weights)


class BahdanauDecoder(_Decoder):
    """Attention from the previous state s_{t-1}; context fed into the RNN step (Bahdanau et al. 2014)."""

    def __init__(self, vocab_size: int, **kw: Any) -> None:
        E, D = kw["embed_dim"], kw["hidden_dim"]
        super().__init__(vocab_size, **kw)
        self.deep = nn.Linear(D + self.context_dim + E, D)
        self.out = nn.Linear(D, vocab_size)

    def rnn_input_dim(self, embed_dim: int, hidden_dim: int) -> int:
        return embed_dim + self.context_dim  # [y_{t-1}; c_t]

    def step(
        self, y_prev: Tensor, state: DecoderState, keys: Tensor, key_allowed: Tensor, t: int, need_weights: bool
    ) -> StepOutput:
        e = self.drop(self.embed(y_prev))  # (B, E)
        a = self.attend(_hidden(state.rnn), keys, key_allowed, t, state.attn, need_weights)
        rnn = self.rnn(torch.cat([e, a.context], dim=-1), state.rnn)
        h = _hidden(rnn)
        logits = self.out(self.drop(torch.tanh(self.deep(torch.cat([h, a.context, e], dim=-1)))))  # (B, V)
        return StepOutput(logits, _head_mean(a.weights), _log_prob_sum(a.log_prob), DecoderState(rnn, None, a.state))


class LuongDecoder(_Decoder):
    """RNN step first, then attention with h_t; h~_t = tanh(W_c[c_t; h_t]) fed to the next input (Luong et al. 2015)."""

    def __init__(self, vocab_size: int, **kw: Any) -> None:
        D = kw["hidden_dim"]
        super().__init__(vocab_size, **kw)
        self.combine = nn.Linear(self.context_dim + D, D, bias=False)  # W_c
        self.out = nn.Linear(D, vocab_size)  # W_s

    def rnn_input_dim(self, embed_dim: int, hidden_dim: int) -> int:
        return embed_dim + hidden_dim  # [y_{t-1}; h~_{t-1}] (input feeding)

    def init_state(self, summary: Tensor) -> DecoderState:
        s = super().init_state(summary)
        return s._replace(feed=torch.zeros_like(_hidden(s.rnn)))

    def step(
        self, y_prev: Tensor, state: DecoderState, keys: Tensor, key_allowed: Tensor, t: int, need_weights: bool
    ) -> StepOutput:
        e = self.drop(self.embed(y_prev))  # (B, E)
        rnn = self.rnn(torch.cat([e, state.feed], dim=-1), state.rnn)
        h = _hidden(rnn)
        a = self.attend(h, keys, key_allowed, t, state.attn, need_weights)
        h_tilde = torch.tanh(self.combine(torch.cat([a.context, h], dim=-1)))  # (B, D)
        logits = self.out(self.drop(h_tilde))
        return StepOutput(logits, _head_mean(a.weights), _log_prob_sum(a.log_prob), DecoderState(rnn, h_tilde, a.state))


#: decoder style -> class
DECODERS: dict[str, type] = {"bahdanau": BahdanauDecoder, "luong": LuongDecoder}


@dataclass(eq=False)
class Seq2SeqConfig(ModelConfig):
    """The fields of a :class:`Seq2Seq`.

    src_vocab_size: source vocabulary size (ids 0..3 are PAD, BOS, EOS, UNK). tgt_vocab_size: target's.
    attention: a sequence mechanism name of ``attnkit.list_mechanisms()``.
    decoder: "bahdanau" or "luong" (see the module docstring). cell: "gru" or "lstm".
    embed_dim, hidden_dim: E and D (encoder outputs and decoder state are D wide).
    encoder_layers: stacked bidirectional layers. dropout: on embeddings and before the output layer.
    attention_options: extra keywords for the mechanism (``window`` for local-m ...).
    reinforce_weight: weight of the REINFORCE term when the attention is stochastic.
    label_smoothing: of the cross-entropy.
    max_source_len: the longest source, for mechanisms sized by it (luong-location).
    """

    model = "seq2seq"

    src_vocab_size: int
    tgt_vocab_size: int
    attention: str = "bahdanau"
    decoder: str = "bahdanau"
    cell: str = "gru"
    embed_dim: int = 64
    hidden_dim: int = 128
    encoder_layers: int = 1
    dropout: float = 0.1
    attention_options: dict[str, Any] = field(default_factory=dict)
    reinforce_weight: float = 1.0
    label_smoothing: float = 0.0
    max_source_len: int = 256

    def __post_init__(self) -> None:
        for n in ("src_vocab_size", "tgt_vocab_size", "embed_dim", "hidden_dim", "encoder_layers"):
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{n} must be a positive int, got {v!r}")
        if self.src_vocab_size < 5 or self.tgt_vocab_size < 5:
            raise ValueError(f"vocabularies need the 4 special ids plus tokens; got src {self.src_vocab_size}, "
                             f"tgt {self.tgt_vocab_size}")
        _check_choice(self.decoder, "decoder", DECODERS)
        _check_choice(self.cell, "cell", CELLS)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        self.attention_options = dict(self.attention_options or {})


class _SearchState(NamedTuple):
    """What one decoding step reads: encoder outputs, which of them may be attended (True = a real
    token), the decoder state, the step index."""

    keys: Tensor  # (B, S, D)
    key_allowed: Tensor  # (B, S)
    decoder: DecoderState
    t: int


@register_model("seq2seq")
class Seq2Seq(nn.Module):
    """Bidirectional RNN encoder + attention decoder (see the module docstring and :class:`Seq2SeqConfig`).

    ``Seq2Seq(Seq2SeqConfig(...))``, or ``Seq2Seq(src_vocab_size, tgt_vocab_size=..., **fields)``.

    Example::

        >>> m = Seq2Seq(30, tgt_vocab_size=30, attention="bahdanau")
        >>> [(tokens, alignment)] = m.generate(torch.tensor([[5, 6, 7]]), torch.tensor([3]), max_len=10)
    """

    config_class = Seq2SeqConfig

    def __init__(self, config: Seq2SeqConfig | int, /, **fields: Any) -> None:
        super().__init__()
        cfg = make_config(Seq2SeqConfig, config, "src_vocab_size", fields)
        self.config = cfg
        self.encoder = Encoder(cfg.src_vocab_size, embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_dim,
                               layers=cfg.encoder_layers, cell=cfg.cell, dropout=cfg.dropout)
        self.decoder = DECODERS[cfg.decoder](
            cfg.tgt_vocab_size, embed_dim=cfg.embed_dim, hidden_dim=cfg.hidden_dim, cell=cfg.cell,
            attention=cfg.attention, attention_options=cfg.attention_options, dropout=cfg.dropout,
            max_source_len=cfg.max_source_len,
        )
        self.reinforce_weight = float(cfg.reinforce_weight)
        self.label_smoothing = float(cfg.label_smoothing)
        # REINFORCE baseline for stochastic (hard) attention: a running mean of the reward (buffers only)
        self.baseline = MovingAverageBaseline(0.9)

    @classmethod
    def config_for_task(cls, task: Any, **fields: Any) -> dict[str, Any]:
        """Sized from ``task``'s vocabularies and longest source, plus ``fields`` (None = default)."""
        cfg: dict[str, Any] = {
            "model": "seq2seq",
            "src_vocab_size": len(task.src_vocab),
            "tgt_vocab_size": len(task.tgt_vocab),
        }
        splits = getattr(task, "splits", {})
        longest = max((len(task.src_vocab.tokens(e.src)) for exs in splits.values() for e in exs), default=0)
        if longest:
            cfg["max_source_len"] = longest + 16
        cfg.update({k: v for k, v in fields.items() if v is not None})
        Seq2SeqConfig.from_dict(cfg)  # unknown or invalid fields raise here
        return cfg

    # -- teacher-forced training -----------------------------------------------------------
    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, Tensor, DecoderState]:
        keys, summary = self.encoder(src, src_lengths)  # (B, S, D), (B, D)
        S = keys.shape[1]
        key_allowed = torch.arange(S, device=src.device)[None, :] < src_lengths.to(src.device)[:, None]  # (B, S)
        return keys, key_allowed, self.decoder.init_state(summary)

    def forward(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, *, need_weights: bool = False
    ) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """Teacher forcing: logits (B, T, V), weights (B, T, S) if asked, hard-attention log_prob (B, T) or None."""
        keys, key_allowed, state = self.encode(src, src_lengths)
        logits, weights, log_probs = [], [], []
        for t in range(tgt_in.shape[1]):
            o = self.decoder.step(tgt_in[:, t], state, keys, key_allowed, t, need_weights)
            state = o.state
            logits.append(o.logits)
            weights.append(o.weights)
            log_probs.append(o.log_prob)
        w = torch.stack(weights, 1) if need_weights and weights[0] is not None else None  # (B, T, S)
        lp = torch.stack(log_probs, 1) if log_probs[0] is not None else None  # (B, T)
        return torch.stack(logits, 1), w, lp  # (B, T, V)

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Mean token cross-entropy (+ REINFORCE for stochastic attention); metrics loss, acc, tokens."""
        logits, _, lp = self(batch.src, batch.src_lengths, batch.tgt_in)
        tgt = batch.tgt_out
        mask = tgt != PAD  # (B, T)
        V = logits.shape[-1]
        nll = F.cross_entropy(
            logits.reshape(-1, V), tgt.reshape(-1), ignore_index=PAD, reduction="none",
            label_smoothing=self.label_smoothing,
        ).view_as(tgt)  # (B, T)
        n = mask.sum().clamp(min=1)
        loss = nll.sum() / n
        metrics = {}
        if lp is not None:
            reward = -(nll.detach() * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B,) mean token log-likelihood
            rl = reinforce_loss((lp * mask).sum(1), reward, self.baseline(reward))
            loss = loss + self.reinforce_weight * rl
            metrics["reinforce"] = float(rl.detach())
        with torch.no_grad():
            acc = ((logits.argmax(-1) == tgt) & mask).sum() / n
        metrics.update({"loss": float(nll.detach().sum() / n), "acc": float(acc), "tokens": float(n)})
        return loss, metrics

    # -- decoding: the step/reorder pair of attnkit.models.decoding --------------------------------
    def step(self, state: _SearchState, last_tokens: Tensor) -> tuple[Tensor, _SearchState, Tensor]:
        """Log-probabilities (B, V) of the next token after ``last_tokens`` (B,) and the attention
        weights (B, S) of this step (zeros for a mechanism that returns none)."""
        o = self.decoder.step(last_tokens, state.decoder, state.keys, state.key_allowed, state.t, True)
        w = o.weights if o.weights is not None else torch.zeros_like(state.key_allowed, dtype=state.keys.dtype)
        logp = F.log_softmax(o.logits.float(), dim=-1)  # (B, V)
        return logp, _SearchState(state.keys, state.key_allowed, o.state, state.t + 1), w

    def reorder(self, state: _SearchState, index: Tensor) -> _SearchState:
        """Rows ``index`` of every tensor of the state."""
        return decoding.select_state(state, index)

    @torch.no_grad()
    def generate(
        self, src: Tensor, src_lengths: Tensor, *, max_len: int, beam_size: int = 1, length_penalty: float = 0.0
    ) -> list[tuple[list[int], Tensor]]:
        """Decode each source: [(token ids without EOS, alignment (T, S_i))] — T counts the EOS step.

        ``beam_size=1`` is greedy; larger beams rank finished hypotheses by
        ``log p / len ** length_penalty`` (0 = raw log-probability;
        :func:`attnkit.models.decoding.beam_search`).
        """
        if src.dim() != 2 or src_lengths.shape != src.shape[:1]:
            raise ValueError(
                f"src must be (B, S) with src_lengths (B,), got {tuple(src.shape)} and {tuple(src_lengths.shape)}"
            )
        keys, key_allowed, dec = self.encode(src, src_lengths)
        state = _SearchState(keys, key_allowed, dec, 0)
        B = src.shape[0]
        hyps = decoding.search(self.step, self.reorder, state, batch_size=B, beam_size=beam_size, max_len=max_len,
                               bos=BOS, eos=EOS, length_penalty=length_penalty, device=src.device)
        return [(h.tokens, h.extras[:, : int(n)].float().cpu()) for h, n in zip(hyps, src_lengths.tolist())]
