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

Shape legend: B batch, S source length, T target length, V vocabulary,
E embedding, D hidden (encoder output = decoder state), K beam.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .registry import register_model

__all__ = ["Seq2Seq", "Encoder", "BahdanauDecoder", "LuongDecoder", "DECODERS", "CELLS", "beam_search"]

PAD, BOS, EOS = 0, 1, 2

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

    def __init__(self, vocab_size: int, *, embed_dim: int, hidden_dim: int, layers: int = 1, cell: str = "gru", dropout: float = 0.0) -> None:
        super().__init__()
        _check_choice(cell, "cell", CELLS)
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even (two directions of hidden_dim/2), got {hidden_dim}")
        self.cell = cell
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.drop = nn.Dropout(dropout)
        self.rnn = CELLS[cell][0](
            embed_dim, hidden_dim // 2, num_layers=layers, batch_first=True, bidirectional=True, dropout=dropout if layers > 1 else 0.0
        )

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = self.drop(self.embed(src))  # (B, S, E)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
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
        from ..nn import create
        from ..nn.registry import resolve

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

    def attend(self, query: Tensor, keys: Tensor, key_mask: Tensor, t: int, state: Any, need_weights: bool):
        return self.attention(query, keys, key_mask=key_mask, step=t, state=state, need_weights=need_weights)


class BahdanauDecoder(_Decoder):
    """Attention from the previous state s_{t-1}; context fed into the RNN step (Bahdanau et al. 2014)."""

    def __init__(self, vocab_size: int, **kw: Any) -> None:
        E, D = kw["embed_dim"], kw["hidden_dim"]
        super().__init__(vocab_size, **kw)
        self.deep = nn.Linear(D + self.context_dim + E, D)
        self.out = nn.Linear(D, vocab_size)

    def rnn_input_dim(self, embed_dim: int, hidden_dim: int) -> int:
        return embed_dim + self.context_dim  # [y_{t-1}; c_t]

    def step(self, y_prev: Tensor, state: DecoderState, keys: Tensor, key_mask: Tensor, t: int, need_weights: bool) -> StepOutput:
        e = self.drop(self.embed(y_prev))  # (B, E)
        a = self.attend(_hidden(state.rnn), keys, key_mask, t, state.attn, need_weights)
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

    def step(self, y_prev: Tensor, state: DecoderState, keys: Tensor, key_mask: Tensor, t: int, need_weights: bool) -> StepOutput:
        e = self.drop(self.embed(y_prev))  # (B, E)
        rnn = self.rnn(torch.cat([e, state.feed], dim=-1), state.rnn)
        h = _hidden(rnn)
        a = self.attend(h, keys, key_mask, t, state.attn, need_weights)
        h_tilde = torch.tanh(self.combine(torch.cat([a.context, h], dim=-1)))  # (B, D)
        logits = self.out(self.drop(h_tilde))
        return StepOutput(logits, _head_mean(a.weights), _log_prob_sum(a.log_prob), DecoderState(rnn, h_tilde, a.state))


#: decoder style -> class
DECODERS: dict[str, type] = {"bahdanau": BahdanauDecoder, "luong": LuongDecoder}


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


@register_model("seq2seq")
class Seq2Seq(nn.Module):
    """Bidirectional RNN encoder + attention decoder.

    Args:
        src_vocab_size: source vocabulary size (ids 0..3 are PAD, BOS, EOS, UNK).
        tgt_vocab_size: target vocabulary size.
        attention: a sequence mechanism name of ``attnkit.list_mechanisms()``.
        decoder: "bahdanau" or "luong" (see the module docstring).
        cell: "gru" or "lstm".
        embed_dim, hidden_dim: E and D (encoder outputs and decoder state are D wide).
        encoder_layers: stacked bidirectional layers.
        dropout: on embeddings and before the output layer.
        attention_options: extra keywords for the mechanism (``window`` for local-m ...).
        reinforce_weight: weight of the REINFORCE term when the attention is stochastic.
        label_smoothing: of the cross-entropy.
        max_source_len: the longest source, for mechanisms sized by it (luong-location).

    Example::

        >>> m = Seq2Seq(30, tgt_vocab_size=30, attention="bahdanau")
        >>> [(tokens, alignment)] = m.generate(torch.tensor([[5, 6, 7]]), torch.tensor([3]), max_len=10)
    """

    def __init__(
        self,
        src_vocab_size: int,
        *,
        tgt_vocab_size: int,
        attention: str = "bahdanau",
        decoder: str = "bahdanau",
        cell: str = "gru",
        embed_dim: int = 64,
        hidden_dim: int = 128,
        encoder_layers: int = 1,
        dropout: float = 0.1,
        attention_options: Optional[dict[str, Any]] = None,
        reinforce_weight: float = 1.0,
        label_smoothing: float = 0.0,
        max_source_len: int = 256,
    ) -> None:
        super().__init__()
        for n, v in (("src_vocab_size", src_vocab_size), ("tgt_vocab_size", tgt_vocab_size), ("embed_dim", embed_dim), ("hidden_dim", hidden_dim), ("encoder_layers", encoder_layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{n} must be a positive int, got {v!r}")
        if src_vocab_size < 5 or tgt_vocab_size < 5:
            raise ValueError(f"vocabularies need the 4 special ids plus tokens; got src {src_vocab_size}, tgt {tgt_vocab_size}")
        _check_choice(decoder, "decoder", DECODERS)
        _check_choice(cell, "cell", CELLS)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        attention_options = dict(attention_options or {})
        self.config = {
            "model": "seq2seq",
            "src_vocab_size": src_vocab_size,
            "tgt_vocab_size": tgt_vocab_size,
            "attention": attention,
            "decoder": decoder,
            "cell": cell,
            "embed_dim": embed_dim,
            "hidden_dim": hidden_dim,
            "encoder_layers": encoder_layers,
            "dropout": dropout,
            "attention_options": attention_options,
            "reinforce_weight": reinforce_weight,
            "label_smoothing": label_smoothing,
            "max_source_len": max_source_len,
        }
        self.encoder = Encoder(src_vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, layers=encoder_layers, cell=cell, dropout=dropout)
        self.decoder = DECODERS[decoder](
            tgt_vocab_size, embed_dim=embed_dim, hidden_dim=hidden_dim, cell=cell, attention=attention,
            attention_options=attention_options, dropout=dropout, max_source_len=max_source_len,
        )
        self.reinforce_weight = float(reinforce_weight)
        self.label_smoothing = float(label_smoothing)
        from ..nn.hard import MovingAverageBaseline

        # REINFORCE baseline for stochastic (hard) attention: a running mean of the reward (buffers only)
        self.baseline = MovingAverageBaseline(0.9)

    @classmethod
    def config_for_task(cls, task: Any, **overrides: Any) -> dict[str, Any]:
        """Sized from ``task``'s vocabularies and its tuned ``model_defaults``; ``overrides`` win (None = default)."""
        cfg = {
            "model": "seq2seq",
            "src_vocab_size": len(task.src_vocab),
            "tgt_vocab_size": len(task.tgt_vocab),
            **getattr(task, "model_defaults", {}),
        }
        splits = getattr(task, "splits", {})
        longest = max((len(task.src_vocab.tokens(e.src)) for exs in splits.values() for e in exs), default=0)
        if longest:
            cfg["max_source_len"] = longest + 16
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        return cfg

    # -- teacher-forced training -----------------------------------------------------------
    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, Tensor, DecoderState]:
        keys, summary = self.encoder(src, src_lengths)  # (B, S, D), (B, D)
        S = keys.shape[1]
        key_mask = torch.arange(S, device=src.device)[None, :] < src_lengths.to(src.device)[:, None]  # (B, S)
        return keys, key_mask, self.decoder.init_state(summary)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, *, need_weights: bool = False) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """Teacher forcing: logits (B, T, V), weights (B, T, S) if asked, hard-attention log_prob (B, T) or None."""
        keys, key_mask, state = self.encode(src, src_lengths)
        logits, weights, log_probs = [], [], []
        for t in range(tgt_in.shape[1]):
            o = self.decoder.step(tgt_in[:, t], state, keys, key_mask, t, need_weights)
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
        nll = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1), ignore_index=PAD, reduction="none", label_smoothing=self.label_smoothing).view_as(tgt)  # (B, T)
        n = mask.sum().clamp(min=1)
        loss = nll.sum() / n
        metrics = {}
        if lp is not None:
            from ..nn import reinforce_loss

            reward = -(nll.detach() * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B,) mean token log-likelihood
            rl = reinforce_loss((lp * mask).sum(1), reward, self.baseline(reward))
            loss = loss + self.reinforce_weight * rl
            metrics["reinforce"] = float(rl.detach())
        with torch.no_grad():
            acc = ((logits.argmax(-1) == tgt) & mask).sum() / n
        metrics.update({"loss": float(nll.detach().sum() / n), "acc": float(acc), "tokens": float(n)})
        return loss, metrics

    # -- decoding --------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, src: Tensor, src_lengths: Tensor, *, max_len: int, beam_size: int = 1, length_penalty: float = 1.0
    ) -> list[tuple[list[int], Tensor]]:
        """Decode each source: [(token ids without EOS, alignment (T, S_i))] — T counts the EOS step.

        ``beam_size=1`` is greedy; larger beams rank finished hypotheses by
        ``log p / len ** length_penalty`` (0 = raw log-probability).
        """
        if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
            raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        if src.dim() != 2 or src_lengths.shape != src.shape[:1]:
            raise ValueError(f"src must be (B, S) with src_lengths (B,), got {tuple(src.shape)} and {tuple(src_lengths.shape)}")
        if beam_size == 1:
            return self._greedy(src, src_lengths, max_len)
        return beam_search(self, src, src_lengths, max_len=max_len, beam_size=beam_size, length_penalty=length_penalty)

    def _greedy(self, src: Tensor, src_lengths: Tensor, max_len: int) -> list[tuple[list[int], Tensor]]:
        keys, key_mask, state = self.encode(src, src_lengths)
        B = src.shape[0]
        y = torch.full((B,), BOS, dtype=torch.long, device=src.device)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        toks, aligns = [], []
        for t in range(max_len):
            o = self.decoder.step(y, state, keys, key_mask, t, True)
            state = o.state
            y = o.logits.argmax(-1)  # (B,)
            toks.append(y)
            aligns.append(o.weights if o.weights is not None else torch.zeros_like(key_mask, dtype=keys.dtype))
            done = done | (y == EOS)
            if bool(done.all()):
                break
        tok = torch.stack(toks, 1).tolist()  # (B, T)
        al = torch.stack(aligns, 1)  # (B, T, S)
        out = []
        for b in range(B):
            ids = tok[b]
            n = ids.index(EOS) if EOS in ids else len(ids)
            out.append((ids[:n], al[b, : min(n + 1, len(ids)), : int(src_lengths[b])].float().cpu()))
        return out


def beam_search(
    model: Seq2Seq, src: Tensor, src_lengths: Tensor, *, max_len: int, beam_size: int, length_penalty: float = 1.0
) -> list[tuple[list[int], Tensor]]:
    """Batched beam search keeping each hypothesis's alignment history.

    All B*K beams step together; a finished hypothesis (EOS) leaves the beam
    with score ``log p / len ** length_penalty``. Search stops when every
    source has K finished hypotheses whose best normalised score no live beam
    can still beat, or at ``max_len``.
    """
    K = beam_size
    keys, key_mask, state = model.encode(src, src_lengths)
    B, S = key_mask.shape
    dev = src.device
    rep = torch.arange(B, device=dev).repeat_interleave(K)  # (B*K,)
    keys, key_mask, state = keys[rep], key_mask[rep], select_state(state, rep)  # (B*K, ...)
    scores = torch.full((B, K), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # only one live beam at the start
    y = torch.full((B * K,), BOS, dtype=torch.long, device=dev)
    hist_tok = torch.zeros(B * K, 0, dtype=torch.long, device=dev)  # (B*K, t)
    hist_al = torch.zeros(B * K, 0, S, device=dev)  # (B*K, t, S)
    finished: list[list[tuple[float, list[int], Tensor]]] = [[] for _ in range(B)]

    def norm(score: float, length: int) -> float:
        return score / (max(length, 1) ** length_penalty)

    for t in range(max_len):
        o = model.decoder.step(y, state, keys, key_mask, t, True)
        logp = F.log_softmax(o.logits.float(), dim=-1)  # (B*K, V)
        V = logp.shape[-1]
        w = o.weights if o.weights is not None else torch.zeros(B * K, S, device=dev)
        total = (scores.view(-1, 1) + logp).view(B, K * V)  # (B, K*V)
        top, idx = total.topk(min(2 * K, K * V), dim=-1)  # (B, 2K)
        beam, tok = idx // V, idx % V
        new_rows, new_scores, new_tok = [], [], []
        for b in range(B):
            live = []
            for j in range(top.shape[1]):
                sc = float(top[b, j])
                if sc == float("-inf"):
                    break
                row = b * K + int(beam[b, j])
                if int(tok[b, j]) == EOS:
                    al = torch.cat([hist_al[row], w[row : row + 1]], 0)  # (t+1, S)
                    finished[b].append((norm(sc, t + 1), hist_tok[row].tolist(), al))
                else:
                    live.append((row, sc, int(tok[b, j])))
                if len(live) == K:
                    break
            while len(live) < K:  # keep the shape: pad with dead beams
                live.append((b * K, float("-inf"), EOS))
            for row, sc, tk in live:
                new_rows.append(row)
                new_scores.append(sc)
                new_tok.append(tk)
        rows = torch.tensor(new_rows, device=dev)
        scores = torch.tensor(new_scores, device=dev).view(B, K)
        y = torch.tensor(new_tok, device=dev)
        hist_tok = torch.cat([hist_tok[rows], y[:, None]], 1)
        hist_al = torch.cat([hist_al[rows], w[rows][:, None]], 1)
        state = select_state(o.state, rows)
        # stop when no live beam can still beat the K-th best finished hypothesis of its source:
        # log p only falls as a beam grows, so a live beam's best normalised score is bounded by
        # its raw score now spread over max_len tokens (or the raw score itself without a penalty)
        best_live = scores.max(dim=1).values.tolist()  # (B,)
        if all(
            len(f) >= K and (bl == float("-inf") or (norm(bl, max_len) if length_penalty > 0 else bl) <= sorted(x[0] for x in f)[-K])
            for f, bl in zip(finished, best_live)
        ):
            break
    out = []
    for b in range(B):
        cands = finished[b] or [(norm(float(scores[b, 0]), hist_tok.shape[1]), hist_tok[b * K].tolist(), hist_al[b * K])]
        _, toks, al = max(cands, key=lambda x: x[0])
        toks = toks[: toks.index(EOS)] if EOS in toks else toks
        out.append((toks, al[:, : int(src_lengths[b])].float().cpu()))
    return out

