"""Multi-head attention: Vaswani et al. 2017, "Attention Is All You Need" (arXiv:1706.03762).

``MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,  head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)``

with grouped-query / multi-query attention (Ainslie et al. 2023,
arXiv:2305.13245; Shazeer 2019, arXiv:1911.02150: ``num_kv_heads`` key/value
heads shared by groups of query heads), a positional encoding inside the
attention (RoPE, Su et al. 2021, arXiv:2104.09864, or ALiBi, Press et al. 2021,
arXiv:2108.12409, passed as one object), any score of
:mod:`attnkit.core.scores` (a learned one gets its tensors from
:meth:`Score.parameters <attnkit.core.scores.Score.parameters>`), and a
:class:`~attnkit.nn.kv_cache.KVCache` for incremental decoding.

Shape legend: B batch, L queries, S keys, H query heads, Hk key/value heads,
Dh features per head.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
import torch.nn as nn
from torch import Tensor

from ..core import masks as fmasks
from ..core.normalize import Normalizer, Softmax
from ..core.scores import SCORES, ScaledDot, Score, get_score
from ..distributed.context import ContextParallel, as_context_parallel, current_context_parallel
from ._common import attend, check_dim, check_dropout, check_normalizer, shape_str
from .base import AttentionOutput
from .kv_cache import KVCache
from .positional import ALiBi, RotaryEmbedding
from .projections import InProjection, ProjectionSource, split_heads
from .registry import register_mechanism

__all__ = ["MultiHeadAttention", "MultiHeadMechanism", "Positional"]

#: a positional encoding applied inside the attention
Positional = Union[RotaryEmbedding, ALiBi]


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017) with GQA/MQA, RoPE/ALiBi and a KV cache.

    Args:
        embed_dim: features of the query input (and the output, unless ``out_dim``).
        num_heads: H query heads.
        num_kv_heads: Hk key/value heads (GQA; 1 = multi-query); must divide
            ``num_heads``; default ``num_heads``.
        head_dim: Dh; default ``embed_dim // num_heads`` (which must divide).
        key_dim: features of the key input; default ``embed_dim``.
        value_dim: features of the value input; default ``key_dim``.
        out_dim: output features; default ``embed_dim``.
        bias: biases on the four projections.
        dropout: dropout on the attention weights (training only).
        score: a score name ("scaled_dot" default, "dot", "cosine", "general",
            "additive", ...) or a Score instance (``Cosine(beta=5.0)``). A
            named score that learns tensors (general: W (H, Dh, Dh); additive:
            W_q, W_k, v per head) gets them as parameters ``score_<name>``.
        score_hidden_dim: the hidden size D of a learned additive score; default Dh.
        normalizer: "softmax" (default), any normalizer name, or an instance.
        positional: ``RotaryEmbedding(head_dim)`` (rotate queries and keys by
            their positions), ``ALiBi(num_heads)`` (a per-head distance penalty
            on the scores) or None. One instance may serve every layer.
        context_parallel: a :class:`~attnkit.distributed.ContextParallel` (or a
            process group): self-attention takes this rank's shard (B, L/P, D) of
            every sequence and runs ring attention across the group, RoPE at the
            shard's global positions. None: inside ``with context_parallel(...)``
            only (see :mod:`attnkit.distributed.context`).

    ``forward(query, key=None, value=None, *, key_allowed=None, attn_mask=None,
    causal=False, cache=None, need_weights=False, positions=None,
    score_mod=None, mask_mod=None) -> AttentionOutput``

    * query (B, L, embed_dim) (or one step (B, embed_dim)); key (B, S, key_dim)
      and value (B, S, value_dim); key=None is self-attention (value=None too).
    * key_allowed (B, S) bool: True = the key may be attended (a real token),
      False = ignored (padding); torch's ``key_padding_mask`` is its negation
      (pass ``~key_padding_mask``). With a cache S counts every cached position,
      the new ones included.
    * attn_mask: bool, True = may attend (torch SDPA's polarity, the negation of
      ``torch.nn.MultiheadAttention``'s bool ``attn_mask``), or float (added to
      the scores); (L, S), (B, L, S) or (B, H, L, S).
    * A query with no allowed key gets context 0 from the attention, so its
      output is ``out_proj(0)`` (the output bias), weights 0; never NaN.
    * causal: True = query i sees keys j <= i; with a cache the queries are
      the last L of S positions (bottom-right alignment) automatically.
    * cache: a :meth:`new_cache` KVCache; new keys/values are appended (a
      static one stores the cross-attention keys/values once) and it is
      returned as ``state``.
    * Cross-attention without a cache returns as ``state`` a static KVCache of
      the projected keys/values; passed back (``cache=out.state``) with the same
      ``key`` and ``value`` tensors, the next call skips their projections (an
      RNN decoder attending to one encoder output at every step). Other tensors
      are projected into a new cache.
    * positions (L,) or (B, L): RoPE positions of self-attention's queries and
      keys (default: after the cached ones).
    * need_weights: return per-head weights (B, H, L, S); otherwise none are
      computed, so fused backends (SDPA) can run the call.

    Returns AttentionOutput(context (B, L, out_dim), weights or None,
    log_prob (B, H, L) for stochastic normalizers, state = the KVCache or None).

    Example::

        >>> mha = MultiHeadAttention(16, num_heads=4, num_kv_heads=2, positional=RotaryEmbedding(4))
        >>> x = torch.randn(2, 5, 16)
        >>> out = mha(x, causal=True, need_weights=True)
        >>> out.context.shape, out.weights.shape
        (torch.Size([2, 5, 16]), torch.Size([2, 4, 5, 5]))
        >>> cache = mha.new_cache(2, 5)
        >>> steps = [mha(x[:, t:t + 1], causal=True, cache=cache).context for t in range(5)]
        >>> torch.allclose(torch.cat(steps, 1), out.context, atol=1e-6)
        True
    """

    def __init__(
        self,
        embed_dim: int,
        *,
        num_heads: int = 8,
        num_kv_heads: Optional[int] = None,
        head_dim: Optional[int] = None,
        key_dim: Optional[int] = None,
        value_dim: Optional[int] = None,
        out_dim: Optional[int] = None,
        bias: bool = True,
        dropout: float = 0.0,
        score: str | Score = "scaled_dot",
        score_hidden_dim: Optional[int] = None,
        normalizer: str | Normalizer = "softmax",
        positional: Optional[Positional] = None,
        context_parallel: Any = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.context_parallel: Optional[ContextParallel] = as_context_parallel(context_parallel)
        check_dim(embed_dim, "embed_dim")
        check_dim(num_heads, "num_heads")
        for n, d in (("key_dim", key_dim), ("value_dim", value_dim), ("num_kv_heads", num_kv_heads),
                     ("head_dim", head_dim), ("out_dim", out_dim), ("score_hidden_dim", score_hidden_dim)):
            check_dim(d, n, allow_none=True)
        if head_dim is None and embed_dim % num_heads:
            raise ValueError(
                f"num_heads={num_heads} does not divide embed_dim={embed_dim}; pick num_heads among the divisors "
                f"of {embed_dim} or pass head_dim explicitly"
            )
        Hk = num_kv_heads or num_heads
        if num_heads % Hk:
            raise ValueError(
                f"num_kv_heads={Hk} does not divide num_heads={num_heads}; each key/value head serves a whole "
                f"group of query heads (pick a divisor of {num_heads}, e.g. 1 for multi-query attention)"
            )
        fk = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.query_dim = embed_dim
        self.key_dim = key_dim or embed_dim
        self.value_dim = value_dim or self.key_dim
        self.num_heads = num_heads
        self.num_kv_heads = Hk
        self.head_dim = Dh = head_dim or embed_dim // num_heads
        self.out_dim = self.output_dim = out_dim or embed_dim
        self.dropout = check_dropout(dropout)
        self.normalizer = check_normalizer(normalizer)
        self.positional = _check_positional(positional, num_heads, Dh)
        # query, key and value all of embed_dim: one fused (H + 2 Hk)·Dh x D in-projection
        # (q rows, then k, then v) with q_proj / k_proj / v_proj as views of it
        self.fused_in_proj = self.key_dim == self.value_dim == embed_dim
        if self.fused_in_proj:
            nq, nk = num_heads * Dh, Hk * Dh
            self.in_proj_weight = nn.Parameter(torch.empty(nq + 2 * nk, embed_dim, **fk))  # (q|k|v, D)
            if bias:
                self.in_proj_bias = nn.Parameter(torch.empty(nq + 2 * nk, **fk))
            else:
                self.register_parameter("in_proj_bias", None)
            self.q_proj = InProjection(self, 0, nq)
            self.k_proj = InProjection(self, nq, nq + nk)
            self.v_proj = InProjection(self, nq + nk, nq + 2 * nk)
        else:
            self.register_parameter("in_proj_weight", None)
            self.register_parameter("in_proj_bias", None)
            self.q_proj = nn.Linear(embed_dim, num_heads * Dh, bias=bias, **fk)
            self.k_proj = nn.Linear(self.key_dim, Hk * Dh, bias=bias, **fk)
            self.v_proj = nn.Linear(self.value_dim, Hk * Dh, bias=bias, **fk)
        self.out_proj = nn.Linear(num_heads * Dh, self.out_dim, bias=bias, **fk)
        self._init_score(score, score_hidden_dim, fk)
        self.reset_parameters()

    def _init_score(self, score: str | Score, hidden_dim: Optional[int], fk: dict[str, Any]) -> None:
        """A fixed Score, or the learned tensors ``score_<name>`` the score class declares."""
        if not isinstance(score, (str, Score)):
            get_score(score)  # raises: a name or a Score instance
        self.score_name = score.name if isinstance(score, Score) else score
        self._fixed_score: Optional[Score] = None
        self._score_cls: type[Score] = type(score) if isinstance(score, Score) else SCORES.get(score)
        self._score_params: tuple[str, ...] = ()
        if isinstance(score, Score):
            if hidden_dim is not None:
                raise ValueError("score_hidden_dim sizes a learned score; score is already a Score instance")
            self._fixed_score = score
            return
        try:
            shapes = self._score_cls.parameters(self.head_dim, self.head_dim, self.num_heads, hidden_dim=hidden_dim)
        except ValueError as e:
            raise ValueError(f"score_hidden_dim: {e}") from None
        if not shapes:  # parameter-free: one instance serves every call
            self._fixed_score = get_score(score)
            if not self._fixed_score.uses_keys:
                raise ValueError(f"score {score!r} ignores the keys; MultiHeadAttention needs a score of q and k")
            return
        for name, shape in shapes.items():
            self.register_parameter(f"score_{name}", nn.Parameter(torch.empty(shape, **fk)))  # (H, ...)
        self._score_params = tuple(shapes)

    def reset_parameters(self) -> None:
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        if self._score_params:
            self._score_cls.init_parameters({n: getattr(self, f"score_{n}") for n in self._score_params})

    def score(self) -> Score:
        """The functional score with this layer's per-head parameters."""
        if self._fixed_score is not None:
            return self._fixed_score
        return self._score_cls(**{n: getattr(self, f"score_{n}") for n in self._score_params})

    def new_cache(self, batch_size: int, capacity: int, *, static: bool = False,
                  device: Any = None, dtype: Any = None) -> KVCache:
        """An empty :class:`KVCache` for ``capacity`` positions of ``batch_size`` sequences."""
        check_dim(batch_size, "batch_size")
        check_dim(capacity, "capacity")
        w = self.k_proj.weight
        fk = {"device": device or w.device, "dtype": dtype or w.dtype}
        shape = (batch_size, self.num_kv_heads, capacity, self.head_dim)  # (B, Hk, C, Dh)
        return KVCache(torch.zeros(shape, **fk), torch.zeros(shape, **fk), static=static)

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor] = None,
        value: Optional[Tensor] = None,
        *,
        key_allowed: Optional[Tensor] = None,
        attn_mask: Optional[Tensor] = None,
        causal: bool | str = False,
        cache: Optional[KVCache] = None,
        need_weights: bool = False,
        positions: Optional[Tensor] = None,
        score_mod: Any = None,
        mask_mod: Any = None,
    ) -> AttentionOutput:
        if cache is not None and not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a KVCache from new_cache(), got {type(cache).__name__}")
        cp = self.context_parallel or current_context_parallel()
        if cp is not None:
            unsupported = [name for name, given in (
                ("key/value (cross-attention)", key is not None or value is not None), ("cache", cache is not None),
                ("need_weights", need_weights), ("attn_mask", attn_mask is not None),
                ("score_mod", score_mod is not None), ("mask_mod", mask_mod is not None),
                ("ALiBi", isinstance(self.positional, ALiBi)), ("positions", positions is not None),
                (f"normalizer {self.normalizer.name!r}", not self.normalizer.is_softmax)) if given]
            if unsupported:
                raise ValueError(
                    f"MultiHeadAttention under context parallelism (each rank a shard of the sequence) does not take "
                    f"{', '.join(unsupported)}; run it outside context_parallel, or drop them"
                )
            return self._context_parallel_forward(cp, query, key_allowed, causal)
        one_step = isinstance(query, Tensor) and query.dim() == 2
        if one_step:
            query = query.unsqueeze(1)  # (B, 1, D)
        self._check_input("query", query, self.embed_dim, None)
        B, L, _ = query.shape
        if cache is not None and cache.batch_size != B:
            raise ValueError(f"cache was built for batch {cache.batch_size} but query has batch {B}")
        # the L queries are the last L of the S positions when a (non-static) cache holds the earlier ones
        q_offset = cache.length if (cache is not None and not cache.static) else 0
        q, k, v, state = self._project(query, key, value, cache, positions, q_offset)
        S = k.shape[2]
        options = self._attention_options(B, L, S, key_allowed, attn_mask, causal, q_offset, score_mod, mask_mod)
        stochastic = self.normalizer.stochastic
        if need_weights:
            options["return_weights"] = True
        if stochastic:
            options["return_log_prob"] = True
        res = attend(q, k, v, **options)  # (B, H, L, Dh), [weights (B, H, L, S)], [log p (B, H, L)]
        res = res if isinstance(res, tuple) else (res,)
        out = self.out_proj(res[0].transpose(1, 2).reshape(B, L, self.num_heads * self.head_dim))  # (B, L, out_dim)
        w = res[1] if need_weights else None  # (B, H, L, S)
        lp = res[-1] if stochastic else None  # (B, H, L)
        if one_step:
            out = out.squeeze(1)  # (B, out_dim)
            w = w.squeeze(2) if w is not None else None  # (B, H, S)
            lp = lp.squeeze(2) if lp is not None else None  # (B, H)
        return AttentionOutput(out, w, lp, state)

    def _context_parallel_forward(self, cp: ContextParallel, query: Tensor, key_allowed: Optional[Tensor],
                                  causal: bool | str) -> AttentionOutput:
        """Self-attention of this rank's shard query (B, L/P, D): ring (or Ulysses) attention over the
        group, RoPE at the shard's global positions; key_allowed is the shard's (B, L/P)."""
        self._check_input("query", query, self.embed_dim, None)
        B, L, _ = query.shape
        positions = None
        if isinstance(self.positional, RotaryEmbedding):
            positions = cp.positions(L * cp.world_size, device=query.device)  # (L/P,) global positions
        q, k, v, _ = self._project(query, None, None, None, positions, 0)  # (B, H, L/P, Dh), (B, Hk, L/P, Dh)
        options: dict[str, Any] = {"score": self.score(), "causal": causal}
        if self.dropout > 0 and self.training:
            options["dropout_p"] = self.dropout
        if key_allowed is not None:
            options["mask"] = key_allowed  # (B, L/P): travels the ring with the keys
        ctx = cp.attention(q, k, v, **options)  # (B, H, L/P, Dh)
        out = self.out_proj(ctx.transpose(1, 2).reshape(B, L, self.num_heads * self.head_dim))  # (B, L/P, out_dim)
        return AttentionOutput(out, None, None, None)

    def _project(
        self, query: Tensor, key: Optional[Tensor], value: Optional[Tensor], cache: Optional[KVCache],
        positions: Optional[Tensor], q_offset: int,
    ) -> tuple[Tensor, Tensor, Tensor, Optional[KVCache]]:
        """q (B, H, L, Dh), every key and value the queries see (B, Hk, S, Dh), and the cache
        that holds them (returned as ``state``)."""
        H, Hk, Dh = self.num_heads, self.num_kv_heads, self.head_dim
        rope = self.positional if isinstance(self.positional, RotaryEmbedding) else None
        static = cache is not None and cache.static
        if key is None:
            if value is not None:
                raise ValueError("value was given without key; pass key too (self-attention takes neither)")
            if static and cache.length > 0:  # cross-attention over the stored encoder keys/values
                q = split_heads(self.q_proj(query), H, Dh)  # (B, H, L, Dh)
                k, v = cache.keys_so_far()  # (B, Hk, S, Dh)
                return (q if rope is None else rope(q, positions=positions)), k, v, cache
            if not self.fused_in_proj:
                self._check_input("key", query, self.key_dim, None)  # raises: key_dim differs from embed_dim
            B, L, _ = query.shape
            qkv = nn.functional.linear(query, self.in_proj_weight, self.in_proj_bias)  # (B, L, (H + 2 Hk) Dh)
            qkv = qkv.view(B, L, H + 2 * Hk, Dh).transpose(1, 2)  # (B, H + 2 Hk, L, Dh)
            q, k, v = qkv.split([H, Hk, Hk], dim=1)  # (B, H, L, Dh), (B, Hk, L, Dh), (B, Hk, L, Dh): views
            source = (query, query)
        else:
            value = key if value is None else value
            B = query.shape[0]
            self._check_input("key", key, self.key_dim, B)
            self._check_input("value", value, self.value_dim, B)
            if key.shape[1] != value.shape[1]:
                raise ValueError(
                    f"key has {key.shape[1]} positions but value has {value.shape[1]}; give one value per key"
                )
            if rope is not None and positions is not None:
                raise ValueError("positions= applies to self-attention (key=None); cross-attention keys get 0..S-1")
            q = split_heads(self.q_proj(query), H, Dh)  # (B, H, L, Dh)
            weights = (self.k_proj.weight, self.v_proj.weight)
            if static and cache.length > 0:
                if cache.source is not None and cache.source.matches((key, value), weights):
                    k, v = cache.keys_so_far()  # (B, Hk, S, Dh), projected by an earlier call
                    return (q if rope is None else rope(q)), k, v, cache
                cache = None  # other keys (or changed weights): project them into a new cache
            k = split_heads(self.k_proj(key), Hk, Dh)  # (B, Hk, S_new, Dh)
            v = split_heads(self.v_proj(value), Hk, Dh)  # (B, Hk, S_new, Dh)
            source = (key, value)
        if rope is not None:
            q = rope(q, offset=q_offset, positions=positions)
            k = rope(k, offset=q_offset, positions=positions)
        if cache is None:
            if key is None:
                return q, k, v, None
            return q, k, v, KVCache.filled(k, v, ProjectionSource(source, (self.k_proj.weight, self.v_proj.weight)))
        if cache.static:
            cache.source = ProjectionSource(source, (self.k_proj.weight, self.v_proj.weight))
        k, v = cache.append(k, v)  # (B, Hk, S, Dh)
        return q, k, v, cache

    def _attention_options(
        self, B: int, L: int, S: int, key_allowed: Optional[Tensor], attn_mask: Optional[Tensor],
        causal: bool | str, q_offset: int, score_mod: Any, mask_mod: Any,
    ) -> dict[str, Any]:
        """The keywords of the attention() call; the defaults are left out, so the plainest call
        (scaled dot, softmax, no mask, no dropout) is exactly ``attention(q, k, v, causal=...)``."""
        options: dict[str, Any] = {"causal": causal}
        if causal is True and q_offset:
            options["causal"] = "bottom_right"  # the L queries are the last L of the S cached positions
        if type(self._fixed_score) is not ScaledDot:
            options["score"] = self.score()
        if type(self.normalizer) is not Softmax:
            options["normalizer"] = self.normalizer
        if self.dropout > 0 and self.training:
            options["dropout_p"] = self.dropout
        mask = None
        if key_allowed is not None:
            ka = key_allowed
            if not isinstance(ka, Tensor) or ka.dtype != torch.bool or ka.shape != (B, S):
                got = f"{ka.dtype} {shape_str(ka)}" if isinstance(ka, Tensor) else type(ka).__name__
                raise ValueError(
                    f"key_allowed must be a bool tensor (B, S) = ({B}, {S}), True at the keys that may be attended "
                    f"(a torch key_padding_mask is its negation; with a cache S counts every cached position); "
                    f"got {got}"
                )
            mask = key_allowed[:, None, None, :]  # (B, 1, 1, S)
        if attn_mask is not None:
            mask = fmasks.combine(mask, self._attn_mask(attn_mask, B, L, S))
        if mask is not None:
            options["mask"] = mask
        if isinstance(self.positional, ALiBi):
            alibi_mod = self.positional.score_mod(q_offset=S - L if q_offset else 0)
            if score_mod is None:
                score_mod = alibi_mod
            else:
                user_mod = score_mod

                def score_mod(s, b, h, qi, ki):  # noqa: F811  (ALiBi, then the caller's)
                    return user_mod(alibi_mod(s, b, h, qi, ki), b, h, qi, ki)

        if score_mod is not None:
            options["score_mod"] = score_mod
        if mask_mod is not None:
            options["mask_mod"] = mask_mod
        return options

    def _check_input(self, name: str, t: Tensor, dim: int, B: Optional[int]) -> None:
        if not isinstance(t, Tensor):
            raise TypeError(f"MultiHeadAttention: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 3 or t.shape[-1] != dim:
            raise ValueError(
                f"MultiHeadAttention: {name} has shape {shape_str(t)}; expected (B, N, {dim}) "
                f"(the layer was built with {name}_dim={dim})" if name != "query" else
                f"MultiHeadAttention: query has shape {shape_str(t)}; expected (B, L, {dim}) (embed_dim={dim})"
            )
        if B is not None and t.shape[0] != B:
            raise ValueError(f"MultiHeadAttention: {name} has batch {t.shape[0]} but query has batch {B}")

    def _attn_mask(self, attn_mask: Tensor, B: int, L: int, S: int) -> Tensor:
        m = attn_mask
        if not isinstance(m, Tensor) or not (m.dtype == torch.bool or m.is_floating_point()):
            raise TypeError(
                f"attn_mask must be a bool (True = attend) or float tensor, got {getattr(m, 'dtype', type(m))}"
            )
        if m.dim() == 3:
            m = m.unsqueeze(1)  # (B, 1, L, S)
        ok = m.dim() in (2, 4) and m.shape[-2:] == (L, S)
        if ok and m.dim() == 4:
            ok = m.shape[0] in (1, B) and m.shape[1] in (1, self.num_heads)
        if not ok:
            raise ValueError(
                f"attn_mask has shape {shape_str(attn_mask)}; expected (L, S) = ({L}, {S}), (B, L, S) = "
                f"({B}, {L}, {S}) or (B, H, L, S) = ({B}, {self.num_heads}, {L}, {S})"
            )
        return m

    def extra_repr(self) -> str:
        return (
            f"{self.embed_dim}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}, "
            f"head_dim={self.head_dim}, key_dim={self.key_dim}, value_dim={self.value_dim}, "
            f"out_dim={self.out_dim}, score={self.score_name!r}"
        )


def _check_positional(positional: Any, num_heads: int, head_dim: int) -> Optional[Positional]:
    if positional is None:
        return None
    if isinstance(positional, RotaryEmbedding):
        if positional.dim != head_dim:
            raise ValueError(
                f"positional is RotaryEmbedding(dim={positional.dim}) but the heads have head_dim={head_dim} "
                f"features; pass RotaryEmbedding({head_dim})"
            )
        return positional
    if isinstance(positional, ALiBi):
        if positional.num_heads != num_heads:
            raise ValueError(
                f"positional is ALiBi({positional.num_heads}) but the layer has num_heads={num_heads}; "
                f"pass ALiBi({num_heads})"
            )
        return positional
    raise TypeError(
        f"positional must be a RotaryEmbedding(head_dim), an ALiBi(num_heads) or None, got {positional!r} "
        f"(e.g. positional=RotaryEmbedding({head_dim}) for RoPE)"
    )


@register_mechanism(
    "multi-head",
    "multihead",
    "mha",
    "transformer",
    paper="Vaswani et al. 2017 (arXiv:1706.03762)",
    formula="Concat_i(softmax(Q W_i^Q (K W_i^K)ᵀ / sqrt(d)) V W_i^V) W^O",
)
class MultiHeadMechanism(MultiHeadAttention):
    """:class:`MultiHeadAttention` under the decoder-style call every sequence mechanism of the
    registry takes (:mod:`attnkit.nn.registry`), what ``attnkit.create("multi-head", dim)`` builds.

    ``forward(query, keys=None, values=None, *, key_allowed=None, step=None, state=None,
    need_weights=False, **options)``: ``key_allowed`` (B, S) bool, True = may be attended
    (see :class:`MultiHeadAttention`); ``state`` is the :class:`KVCache` (the previous
    step's ``AttentionOutput.state``, or one from :meth:`new_cache`); ``step`` is part
    of the shared call and not read (positions come from the cache). ``options`` are
    :meth:`MultiHeadAttention.forward`'s other keywords (``causal``, ``attn_mask``, ...).
    """

    def forward(  # type: ignore[override]
        self,
        query: Tensor,
        keys: Optional[Tensor] = None,
        values: Optional[Tensor] = None,
        *,
        key_allowed: Optional[Tensor] = None,
        step: Optional[int] = None,
        state: Optional[KVCache] = None,
        need_weights: bool = False,
        **options: Any,
    ) -> AttentionOutput:
        cache = options.pop("cache", None)
        if cache is not None and state is not None and cache is not state:
            raise ValueError("pass the KV cache as cache= or as state=, not both")
        return super().forward(query, keys, values, key_allowed=key_allowed, cache=state if cache is None else cache,
                               need_weights=need_weights, **options)
