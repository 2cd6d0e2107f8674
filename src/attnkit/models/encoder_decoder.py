"""The encoder-decoder Transformer (Vaswani et al. 2017, "Attention Is All You Need", arXiv:1706.03762).

``p(y_t | y_<t, x) = softmax(W_o Dec(E_y[y_<t] √D + P, Enc(E_x[x] √D + P)))``: an encoder of
self-attention layers and a decoder of causal self-attention + cross-attention layers
(:class:`~attnkit.models.layers.TransformerLayer`), for the sequence-to-sequence tasks (numbers,
dates, g2p, reverse, sort). Decoding (greedy, beam search) is :mod:`attnkit.models.decoding`
through :meth:`Transformer.step` / :meth:`Transformer.reorder` over KV caches.

Shape legend: B batch, S source positions, T target positions, D width, H heads, V target vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..data.vocab import BOS, EOS, PAD
from ..nn.kv_cache import KVCache
from ..nn.positional import LearnedPositionalEncoding
from . import decoding
from .layers import POSITIONAL, TransformerLayer, attention_options, check_common, check_int
from .losses import cross_entropy_metrics
from .registry import ModelConfig, make_config, register_model

__all__ = ["Transformer", "TransformerConfig", "Seq2SeqOutput"]


@dataclass(eq=False)
class TransformerConfig(ModelConfig):
    """The fields of a :class:`Transformer`.

    src_vocab_size, tgt_vocab_size: vocabulary sizes (PAD = 0, BOS = 1, EOS = 2).
    dim, num_heads, encoder_layers, decoder_layers, ffn_mult, dropout: the usual sizes.
    norm_first: pre-norm (default, trains without warm-up) or post-norm (the paper's).
    positional: "sinusoidal" (the paper's), "learned" (up to ``max_len``), "rope", "alibi".
    score: the self- and cross-attention score ("scaled_dot"; "additive", "cosine" ...).
    window: local self-attention within ``window`` positions.
    label_smoothing: ε of the training loss (the paper used 0.1).
    share_embeddings: one embedding for source and target (needs equal vocab sizes);
    the output layer is tied to the target embedding.
    """

    model = "transformer"

    src_vocab_size: int
    tgt_vocab_size: int
    dim: int = 128
    num_heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    ffn_mult: int = 4
    dropout: float = 0.1
    norm_first: bool = True
    positional: str = "sinusoidal"
    max_len: int = 512
    score: str = "scaled_dot"
    window: Optional[int] = None
    activation: str = "relu"
    label_smoothing: float = 0.0
    share_embeddings: bool = False
    bias: bool = True

    def __post_init__(self) -> None:
        check_int("src_vocab_size", self.src_vocab_size, minimum=3)
        check_int("tgt_vocab_size", self.tgt_vocab_size, minimum=3)
        check_int("encoder_layers", self.encoder_layers)
        check_int("decoder_layers", self.decoder_layers)
        check_int("ffn_mult", self.ffn_mult)
        check_int("max_len", self.max_len)
        check_common(dim=self.dim, num_heads=self.num_heads, dropout=self.dropout, positional=self.positional,
                     score=self.score, window=self.window, activation=self.activation)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                f"share_embeddings needs one vocabulary; got src_vocab_size={self.src_vocab_size} and "
                f"tgt_vocab_size={self.tgt_vocab_size} (pass share_embeddings=False)"
            )


class Seq2SeqOutput(NamedTuple):
    logits: Tensor  # (B, T, V_tgt)
    encoder_weights: Optional[list[Tensor]] = None  # per layer (B, H, S, S)
    self_weights: Optional[list[Tensor]] = None  # per layer (B, H, T, T)
    cross_weights: Optional[list[Tensor]] = None  # per layer (B, H, T, S)


class _DecodeState(NamedTuple):
    """What one decoding step reads: the encoder memory, its key mask, each decoder layer's caches."""

    memory: Tensor  # (B, S, D)
    mask: Tensor  # (B, S)
    caches: list[tuple[KVCache, KVCache]]  # (self-attention, cross-attention) per layer


@register_model("transformer", "encoder-decoder")
class Transformer(nn.Module):
    """The encoder-decoder Transformer (see the module docstring).

    ``Transformer(TransformerConfig(...))``, or ``Transformer(src_vocab_size, tgt_vocab_size=..., **fields)``.
    """

    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig | int, /, **fields: Any) -> None:
        super().__init__()
        cfg = make_config(TransformerConfig, config, "src_vocab_size", fields)
        self.config = cfg
        dim = cfg.dim
        self.dim, self.max_len, self.label_smoothing = dim, cfg.max_len, cfg.label_smoothing
        # shared embeddings and the tied output layer read tgt_emb.weight: no tensor appears twice in the state_dict
        self.tgt_emb = nn.Embedding(cfg.tgt_vocab_size, dim, padding_idx=PAD)
        self.src_emb = None if cfg.share_embeddings else nn.Embedding(cfg.src_vocab_size, dim, padding_idx=PAD)
        self.src_pos, pos_opts = POSITIONAL[cfg.positional](dim, cfg.num_heads, cfg.max_len)
        self.tgt_pos, _ = POSITIONAL[cfg.positional](dim, cfg.num_heads, cfg.max_len)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        attn = attention_options(cfg.score, pos_opts, None)
        common = dict(num_heads=cfg.num_heads, ffn_dim=cfg.ffn_mult * dim, dropout=cfg.dropout,
                      attn_dropout=cfg.dropout, norm_first=cfg.norm_first, activation=cfg.activation, bias=cfg.bias,
                      window=cfg.window)
        self.encoder = nn.ModuleList(TransformerLayer(dim, attention=attn, **common) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(
            TransformerLayer(dim, attention=attn, cross_attention=True, cross_options={"score": cfg.score}, **common)
            for _ in range(cfg.decoder_layers)
        )
        self.enc_norm = nn.LayerNorm(dim) if cfg.norm_first else nn.Identity()
        self.dec_norm = nn.LayerNorm(dim) if cfg.norm_first else nn.Identity()
        self.tgt_vocab_size = cfg.tgt_vocab_size
        for emb in (self.src_emb, self.tgt_emb):
            if emb is not None:
                nn.init.normal_(emb.weight, std=dim**-0.5)
                with torch.no_grad():
                    emb.weight[PAD].zero_()

    @classmethod
    def config_for_task(cls, task: Any, **fields: Any) -> dict[str, Any]:
        """Sized for a sequence-to-sequence task: its two vocabularies, plus ``fields`` (None = default)."""
        if not hasattr(task, "src_vocab") or hasattr(task, "encode_prompt"):
            raise ValueError(f"transformer is an encoder-decoder for translation tasks; for {task.name!r} use "
                             "model='gpt' (language modelling) or model='bert' (masked LM, classification)")
        cfg = {"model": "transformer", "src_vocab_size": len(task.src_vocab), "tgt_vocab_size": len(task.tgt_vocab)}
        cfg.update({k: v for k, v in fields.items() if v is not None})
        TransformerConfig.from_dict(cfg)  # unknown or invalid fields raise here
        return cfg

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _embed(self, ids: Tensor, emb: nn.Embedding, pos: Optional[nn.Module], offset: int = 0) -> Tensor:
        if offset + ids.shape[1] > self.max_len and isinstance(pos, LearnedPositionalEncoding):
            raise ValueError(f"sequence of {offset + ids.shape[1]} tokens exceeds max_len={self.max_len}; "
                             "build the model with a larger max_len")
        h = emb(ids) * math.sqrt(self.dim)  # (B, N, D)
        if pos is not None:
            h = pos(h, offset=offset)
        return self.drop(h)

    def encode(
        self, src: Tensor, src_lengths: Tensor, *, need_weights: bool = False
    ) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Memory (B, S, D), which of its keys may be attended (B, S) bool (True = a real source
        token), and the encoder self-attention weights."""
        if src.dim() != 2 or src.dtype != torch.long:
            raise TypeError(f"src must be a (B, S) long tensor, got {src.dtype} {tuple(src.shape)}")
        S = src.shape[1]
        src_allowed = torch.arange(S, device=src.device)[None, :] < src_lengths.to(src.device)[:, None]  # (B, S)
        h = self._embed(src, self.tgt_emb if self.src_emb is None else self.src_emb, self.src_pos)
        weights = []
        for layer in self.encoder:
            h, w, _ = layer(h, key_allowed=src_allowed, need_weights=need_weights)
            weights.append(w)
        return self.enc_norm(h), src_allowed, weights

    def decode(self, tgt_in: Tensor, memory: Tensor, memory_allowed: Tensor, *, caches: Optional[list] = None,
               need_weights: bool | str = False) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Logits (B, T, V) for ``tgt_in`` (B, T); with ``caches`` it continues the cached positions.
        ``memory_allowed`` (B, S) bool: True at the memory keys that may be attended.

        ``need_weights``: True for every layer's weights, "last" for the last layer's only.
        """
        offset = caches[0][0].length if caches else 0
        h = self._embed(tgt_in, self.tgt_emb, self.tgt_pos, offset)
        self_ws, cross_ws = [], []
        last = len(self.decoder) - 1
        for i, layer in enumerate(self.decoder):
            sc, cc = caches[i] if caches else (None, None)
            want = need_weights is True or (need_weights == "last" and i == last)
            h, sw, cw = layer(h, causal=True, cache=sc, memory=memory, memory_allowed=memory_allowed, cross_cache=cc,
                              need_weights=want)
            self_ws.append(sw)
            cross_ws.append(cw)
        return F.linear(self.dec_norm(h), self.tgt_emb.weight), self_ws, cross_ws  # (B, T, V) tied output

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, *, need_weights: bool = False) -> Seq2SeqOutput:
        memory, mask, enc_w = self.encode(src, src_lengths, need_weights=need_weights)
        logits, self_w, cross_w = self.decode(tgt_in, memory, mask, need_weights=need_weights)
        if not need_weights:
            return Seq2SeqOutput(logits)
        return Seq2SeqOutput(logits, enc_w, self_w, cross_w)

    @torch.no_grad()
    def cross_attention_maps(self, src: Tensor, src_lengths: Tensor, tokens: Sequence[int]) -> list[Tensor]:
        """Per layer, the (H, T, S) cross-attention weights of one source (src (1, S)) while the
        decoder writes ``tokens`` (teacher-forced: the same weights greedy decoding saw)."""
        was = self.training
        self.eval()
        try:
            tgt_in = torch.tensor([[BOS, *tokens]], dtype=torch.long, device=src.device)  # (1, T+1)
            cross = self(src, src_lengths, tgt_in, need_weights=True).cross_weights or []
            return [w[0, :, :, : int(src_lengths[0])].cpu() for w in cross]  # (H, T+1, S)
        finally:
            self.train(was)

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Teacher-forced cross-entropy of ``batch.tgt_out`` (PAD ignored, optional label smoothing)."""
        logits = self(batch.src, batch.src_lengths, batch.tgt_in).logits  # (B, T, V)
        return cross_entropy_metrics(logits, batch.tgt_out, ignore_index=PAD, label_smoothing=self.label_smoothing,
                                      accuracy=not self.training)

    # -- decoding: the step/reorder pair of attnkit.models.decoding --------------------------------
    def new_caches(self, memory: Tensor, capacity: int) -> list[tuple[KVCache, KVCache]]:
        """Per decoder layer, an empty self-attention cache of ``capacity`` positions and a cross-attention
        cache for ``memory`` (B, S, D)."""
        B = memory.shape[0]
        return [(layer.self_attn.new_cache(B, capacity), layer.cross_attn.new_cache(B, memory.shape[1], static=True))
                for layer in self.decoder]

    def step(self, state: _DecodeState, last_tokens: Tensor) -> tuple[Tensor, _DecodeState, Tensor]:
        """Log-probabilities (B, V) of the next token after ``last_tokens`` (B,), never PAD or BOS,
        and the last decoder layer's cross-attention averaged over heads (B, S)."""
        logits, _, cross = self.decode(last_tokens[:, None], state.memory, state.mask, caches=state.caches,
                                       need_weights="last")
        logits = logits[:, -1].index_fill(-1, torch.tensor([PAD, BOS], device=logits.device), float("-inf"))
        return logits.log_softmax(-1), state, cross[-1][:, :, -1].mean(1)  # (B, V), state, (B, S)

    def reorder(self, state: _DecodeState, index: Tensor) -> _DecodeState:
        """Rows ``index`` of the memory, its mask and every cache."""
        for sc, cc in state.caches:
            sc.reorder(index)
            cc.reorder(index)
        return _DecodeState(state.memory.index_select(0, index), state.mask.index_select(0, index), state.caches)

    @torch.no_grad()
    def generate(self, src: Tensor, src_lengths: Tensor, *, max_len: int, beam_size: int = 1,
                 length_penalty: float = 0.0) -> list[tuple[list[int], Tensor]]:
        """Decode each source: (tokens without BOS/EOS, alignment (T, S_b)) per row.

        The alignment is the last decoder layer's cross-attention averaged over heads, one row per
        output token. Greedy for ``beam_size=1``; beam search ranks finished hypotheses by
        ``log p / length ** length_penalty`` (:func:`attnkit.models.decoding.beam_search`).
        """
        check_int("max_len", max_len)  # sizes the caches below; decoding.search checks beam_size
        was = self.training
        self.eval()
        try:
            memory, mask, _ = self.encode(src, src_lengths)
            B = memory.shape[0]
            state = _DecodeState(memory, mask, self.new_caches(memory, max_len + 1))
            hyps = decoding.search(self.step, self.reorder, state, batch_size=B, beam_size=beam_size,
                                   max_len=max_len, bos=BOS, eos=EOS, length_penalty=length_penalty,
                                   device=memory.device)
        finally:
            self.train(was)
        return [(h.tokens, h.extras[: len(h.tokens), : int(n)].cpu()) for h, n in zip(hyps, src_lengths.tolist())]
