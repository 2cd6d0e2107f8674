"""GPT: the decoder-only Transformer language model (Radford et al. 2018, 2019), nanoGPT's layout.

``p(x_t | x_<t) = softmax(W_e h_t^L)``, ``h^l = Block_l(h^{l-1})`` with causal self-attention,
``h^0 = E[x] (+ P)``; the output matrix is tied to the embedding (Press & Wolf 2016,
arXiv:1608.05859). Generation (greedy, temperature, top-k, top-p) is :func:`attnkit.models.decoding.sample`
over a KV cache.

Shape legend: B batch, L positions, D width, H heads, V vocabulary.

Example::

    >>> gpt = GPT(65, block_size=64, num_layers=2, num_heads=2, dim=32)
    >>> out = gpt(torch.zeros(1, 5, dtype=torch.long), need_weights=True)
    >>> out.logits.shape, len(out.weights), out.weights[0].shape
    (torch.Size([1, 5, 65]), 2, torch.Size([1, 2, 5, 5]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..distributed.context import ContextParallel, as_context_parallel, current_context_parallel, use_context_parallel
from ..nn.kv_cache import KVCache
from . import decoding
from .layers import POSITIONAL, StackConfig, TransformerLayer, attention_options, check_int, init_gpt_style
from .losses import cross_entropy_metrics
from .registry import make_config, register_model

__all__ = ["GPT", "GPTConfig", "LMOutput"]


@dataclass(eq=False)
class GPTConfig(StackConfig):
    """The fields of a :class:`GPT`: those of :class:`~attnkit.models.layers.StackConfig`, and

    num_kv_heads: grouped-query attention (None: one key/value head per query head).
    tie_weights: the output layer reads the token embedding.
    """

    model = "gpt"

    num_kv_heads: Optional[int] = None
    tie_weights: bool = True


class LMOutput(NamedTuple):
    logits: Tensor  # (B, L, V)
    weights: Optional[list[Tensor]] = None  # per layer (B, H, L, S)
    cache: Optional[list[KVCache]] = None


class _LMState(NamedTuple):
    """Generation state: every token so far, the KV caches, and where the uncached tokens start."""

    tokens: Tensor  # (B, L)
    cache: Optional[list[KVCache]]
    uncached: int


@register_model("gpt", "decoder-only")
class GPT(nn.Module):
    """Decoder-only Transformer language model (see the module docstring).

    ``GPT(GPTConfig(...))``, or ``GPT(vocab_size, **fields)`` for short. ``context_parallel``
    (a :class:`~attnkit.distributed.ContextParallel` or a process group; not part of the config):
    :meth:`forward` / :meth:`loss` take the full (B, T) ids on every rank and run each rank's
    shard of the positions (ring attention across the group), logits (B, T/P, V) for the shard.
    """

    config_class = GPTConfig
    #: forward / loss run under context parallelism (what ``attnkit train --context-parallel`` asks)
    supports_context_parallel = True

    def __init__(self, config: GPTConfig | int, /, *, context_parallel: Any = None, **fields: Any) -> None:
        super().__init__()
        self.context_parallel: Optional[ContextParallel] = as_context_parallel(context_parallel)
        cfg = make_config(GPTConfig, config, "vocab_size", fields)
        self.config = cfg
        self.vocab_size, self.block_size, self.num_layers = cfg.vocab_size, cfg.block_size, cfg.num_layers
        dim = cfg.dim
        self.tok_emb = nn.Embedding(cfg.vocab_size, dim)
        self.pos_emb, pos_opts = POSITIONAL[cfg.positional](dim, cfg.num_heads, cfg.block_size)
        self.drop: Optional[nn.Dropout] = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else None
        self.layers = nn.ModuleList(
            TransformerLayer(dim, num_heads=cfg.num_heads, ffn_dim=cfg.ffn_mult * dim, dropout=cfg.dropout,
                             attn_dropout=cfg.dropout, norm_first=cfg.norm_first, window=cfg.window,
                             activation=cfg.activation, bias=cfg.bias,
                             attention=attention_options(cfg.score, pos_opts, cfg.num_kv_heads))
            for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(dim, bias=cfg.bias) if cfg.norm_first else nn.Identity()
        # tied output (Press & Wolf 2016) reads tok_emb.weight directly: no shared tensor in the state_dict
        self.lm_head = None if cfg.tie_weights else nn.Linear(dim, cfg.vocab_size, bias=False)
        init_gpt_style(self, cfg.num_layers)

    @classmethod
    def config_for_task(cls, task: Any, **fields: Any) -> dict[str, Any]:
        """Sized for a language-modelling task: its vocabulary and block size, plus ``fields`` (None = default)."""
        if not hasattr(task, "vocab") or not hasattr(task, "encode_prompt"):
            raise ValueError(f"gpt is a language model; task {task.name!r} is not language modelling "
                             "(use the shakespeare task, or model='transformer' for translation tasks)")
        cfg = {"model": "gpt", "vocab_size": len(task.vocab), "block_size": getattr(task, "block_size", 256)}
        cfg.update({k: v for k, v in fields.items() if v is not None})
        GPTConfig.from_dict(cfg)  # unknown or invalid fields raise here
        return cfg

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, batch_size: int, capacity: Optional[int] = None) -> list[KVCache]:
        """One empty KV cache per layer, for ``capacity`` (default block_size) positions."""
        cap = capacity or self.block_size
        return [layer.self_attn.new_cache(batch_size, cap) for layer in self.layers]

    def forward(self, idx: Tensor, *, cache: Optional[list[KVCache]] = None, need_weights: bool = False,
                last_only: bool = False) -> LMOutput:
        """Logits (B, L, V) for token ids ``idx`` (B, L); with ``cache`` the ids continue the cached ones."""
        if not isinstance(idx, Tensor) or idx.dim() != 2 or idx.dtype != torch.long:
            got = f"{idx.dtype} {tuple(idx.shape)}" if isinstance(idx, Tensor) else type(idx).__name__
            raise TypeError(f"idx must be a (B, L) long tensor of token ids, got {got}")
        offset = cache[0].length if cache else 0
        B, L = idx.shape
        if offset + L > self.block_size:
            raise ValueError(
                f"sequence of {offset + L} tokens exceeds block_size={self.block_size}; feed at most the last "
                f"{self.block_size} tokens (generate() crops for you) or train a model with a larger block_size"
            )
        cp = self.context_parallel or current_context_parallel()
        if cp is not None:
            return self._context_parallel_forward(cp, idx, cache, need_weights, last_only)
        h = self.tok_emb(idx)  # (B, L, D)
        if self.pos_emb is not None:
            h = self.pos_emb(h, offset=offset)  # (B, L, D)
        if self.drop is not None:
            h = self.drop(h)
        weights: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            h, w, _ = layer(h, causal=True, cache=cache[i] if cache else None, need_weights=need_weights)
            if need_weights:
                weights.append(w)
        h = self.norm(h)
        if last_only:
            h = h[:, -1:]  # (B, 1, D)
        logits = F.linear(h, self.tok_emb.weight) if self.lm_head is None else self.lm_head(h)  # (B, L, V)
        return LMOutput(logits, weights if need_weights else None, cache)

    def _context_parallel_forward(self, cp: ContextParallel, idx: Tensor, cache: Optional[list[KVCache]],
                                  need_weights: bool, last_only: bool) -> LMOutput:
        """Logits (B, T/P, V) of this rank's shard of the full ids ``idx`` (B, T)."""
        if cache is not None or need_weights or last_only:
            raise ValueError("GPT under context parallelism scores whole sequences; cache, need_weights and "
                             "last_only (generation) run on one process, outside context_parallel")
        h = self.tok_emb(cp.shard(idx, 1))  # (B, T/P, D)
        if self.pos_emb is not None:
            h = self.pos_emb(h, positions=cp.positions(idx.shape[1], device=idx.device))  # (B, T/P, D)
        if self.drop is not None:
            h = self.drop(h)
        with use_context_parallel(cp):
            for layer in self.layers:
                h, _, _ = layer(h, causal=True)
        h = self.norm(h)
        return LMOutput(F.linear(h, self.tok_emb.weight) if self.lm_head is None else self.lm_head(h))

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Next-token cross-entropy of ``batch.x`` (B, T) against ``batch.y`` (B, T); under context
        parallelism the mean over this rank's shard of the positions (average the gradients)."""
        logits = self(batch.x).logits  # (B, T, V), or (B, T/P, V) for this rank's shard
        cp = self.context_parallel or current_context_parallel()
        y = batch.y if cp is None else cp.shard(batch.y, 1)  # (B, T) or (B, T/P)
        if self.training:  # every position is a target: B·T tokens, no count to take
            return cross_entropy_metrics(logits, y, accuracy=False, tokens=y.numel())
        return cross_entropy_metrics(logits, y)

    # -- generation: the step/reorder pair of attnkit.models.decoding ------------------------------
    def step(self, state: _LMState, last_tokens: Tensor) -> tuple[Tensor, _LMState, None]:
        """Append ``last_tokens`` (B,) and return the next-token logits (B, V).

        While the context fits in ``block_size``, only the tokens the KV cache has not seen are
        run (one per step). Past ``block_size`` the context is the last ``block_size`` tokens
        (nanoGPT's crop): the window slides by one each step, so every token's position, and with
        it every cached key and value, changes; nothing cached is valid, and the window is run
        without the cache, the same call as uncached generation (same tokens, no cache writes).
        """
        tokens = torch.cat([state.tokens, last_tokens[:, None]], dim=1)  # (B, L+1)
        cache = state.cache
        if cache is not None and tokens.shape[1] <= self.block_size:
            logits = self(tokens[:, state.uncached :], cache=cache, last_only=True).logits[:, -1]  # (B, V)
            return logits, _LMState(tokens, cache, tokens.shape[1]), None
        logits = self(tokens[:, -self.block_size :], last_only=True).logits[:, -1]  # (B, V)
        return logits, _LMState(tokens, None, tokens.shape[1]), None

    def reorder(self, state: _LMState, index: Tensor) -> _LMState:
        """Rows ``index`` of the tokens and caches."""
        cache = [c.reorder(index) for c in state.cache] if state.cache is not None else None
        return _LMState(state.tokens.index_select(0, index), cache, state.uncached)

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: Tensor | Sequence[int],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        use_cache: bool = True,
        generator: Optional[torch.Generator] = None,
        suppress_ids: Optional[Sequence[int]] = None,
    ) -> Tensor:
        """Continue ``prompt_ids`` ((L,) or (B, L)) by ``max_new_tokens``: (B, L + new) ids.

        ``temperature=0`` is greedy; ``suppress_ids`` are never produced (e.g. the vocabulary's
        PAD/BOS/EOS/UNK, which a character LM never sees as targets). See :meth:`step` for the
        context past ``block_size`` and the cache.
        """
        idx = torch.as_tensor(prompt_ids, dtype=torch.long, device=self.tok_emb.weight.device)
        if idx.dim() == 1:
            idx = idx.unsqueeze(0)  # (1, L)
        if idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError(f"prompt_ids must hold at least one token, shape (L,) or (B, L); got {tuple(idx.shape)}")
        if int(idx.max()) >= self.vocab_size or int(idx.min()) < 0:
            raise ValueError(
                f"prompt_ids hold ids outside 0..{self.vocab_size - 1}; encode the prompt with the task's vocabulary"
            )
        if idx.shape[1] > self.block_size:
            raise ValueError(
                f"the prompt has {idx.shape[1]} tokens but the model's block_size is {self.block_size}; "
                f"pass at most its last {self.block_size} tokens"
            )
        check_int("max_new_tokens", max_new_tokens, minimum=0)
        if suppress_ids:
            ids = list(suppress_ids)
            if min(ids) < 0 or max(ids) >= self.vocab_size:
                raise ValueError(f"suppress_ids must be ids in 0..{self.vocab_size - 1}, got {ids}")
        was_training = self.training
        self.eval()
        try:
            cache = self.new_cache(idx.shape[0]) if use_cache else None
            state = _LMState(idx[:, :-1], cache, 0)
            new = decoding.sample(self.step, state, idx[:, -1], max_new_tokens=max_new_tokens,
                                  temperature=temperature, top_k=top_k, top_p=top_p, generator=generator,
                                  suppress_ids=suppress_ids)
        finally:
            self.train(was_training)
        return torch.cat([idx, new], dim=1)  # (B, L + new)

    @torch.no_grad()
    def attention_maps(self, idx: Tensor) -> list[Tensor]:
        """The (B, H, L, L) attention weights of every layer for ids ``idx`` (B, L)."""
        was = self.training
        self.eval()
        try:
            return self(idx, need_weights=True).weights or []
        finally:
            self.train(was)
