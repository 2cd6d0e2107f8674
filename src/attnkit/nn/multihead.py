"""Multi-head attention: Vaswani et al. 2017, "Attention Is All You Need" (arXiv:1706.03762).

``MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,  head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)``

with grouped-query / multi-query attention (Ainslie et al. 2023,
arXiv:2305.13245; Shazeer 2019, arXiv:1911.02150: ``num_kv_heads`` key/value
heads shared by groups of query heads), optional RoPE (Su et al. 2021,
arXiv:2104.09864) or ALiBi (Press et al. 2021, arXiv:2108.12409), and a
:class:`KVCache` for incremental decoding.

Shape legend: B batch, L queries, S keys, H query heads, Hk key/value heads,
Dh features per head.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..core import masks as fmasks
from ..core.normalize import Softmax
from ..core.scores import SCORES, Additive, General, ScaledDot, Score, get_score
from ._common import attend, check_dim, check_dropout, check_normalizer, shape_str
from .base import AttentionOutput
from .positional import ALiBi, RotaryEmbedding
from .registry import register_mechanism

__all__ = ["MultiHeadAttention", "KVCache"]


class InProjection:
    """``q_proj`` / ``k_proj`` / ``v_proj`` of a fused in-projection: nn.Linear's interface
    (``weight``, ``bias``, ``in_features``, ``out_features``, call) over rows
    ``start:stop`` of the owner's ``in_proj_weight`` / ``in_proj_bias``.

    One (H + 2 Hk)·Dh x D parameter, as in ``torch.nn.MultiheadAttention`` and
    nanoGPT's ``c_attn``, lets self-attention run one matmul with no per-call
    concatenation of weights (and its backward), and gives the optimizer one
    tensor instead of three.
    """

    def __init__(self, owner: "MultiHeadAttention", start: int, stop: int) -> None:
        self.owner, self.start, self.stop = owner, start, stop
        self.in_features, self.out_features = owner.embed_dim, stop - start

    @property
    def weight(self) -> Tensor:
        return self.owner.in_proj_weight[self.start:self.stop]  # (out, D), a view

    @property
    def bias(self) -> Optional[Tensor]:
        b = self.owner.in_proj_bias
        return None if b is None else b[self.start:self.stop]

    def __call__(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight, self.bias)

    def __repr__(self) -> str:
        return f"InProjection(in_features={self.in_features}, out_features={self.out_features}, rows={self.start}:{self.stop})"

class KVCache:
    """Projected keys and values of the positions seen so far, for incremental decoding.

    Preallocated (B, Hk, capacity, Dh) buffers written in place (out of
    place when autograd is recording through them), so decoding n tokens
    costs no reallocation. Build it with :meth:`MultiHeadAttention.new_cache`.

    ``static=True`` is for cross-attention: the first call stores the
    projected encoder keys/values, later calls reuse them (pass ``key=None``).
    Appending past ``capacity`` raises. :meth:`reorder` selects batch rows
    (beam search).
    """

    def __init__(self, key: Tensor, value: Tensor, *, static: bool = False) -> None:
        if key.dim() != 4 or value.dim() != 4 or key.shape[:3] != value.shape[:3]:
            raise ValueError(
                f"KVCache needs key and value buffers (B, Hk, capacity, Dh) that agree on (B, Hk, capacity); "
                f"got {shape_str(key)} and {shape_str(value)}"
            )
        self.key = key
        self.value = value
        self.static = bool(static)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.key.shape[2]

    @property
    def batch_size(self) -> int:
        return self.key.shape[0]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (B, Hk, n, Dh) after the cached positions; return all (B, Hk, length, Dh)."""
        n = k.shape[2]
        if self.static and self.length > 0:
            raise ValueError("this static (cross-attention) cache is already filled; pass key=None to reuse it")
        if k.shape[:2] != self.key.shape[:2] or k.shape[-1] != self.key.shape[-1] or v.shape[-1] != self.value.shape[-1]:
            raise ValueError(
                f"cache holds (B, Hk, ., Dh) = {shape_str(self.key)} but got keys {shape_str(k)}; "
                "build the cache with this layer's new_cache(batch_size, capacity)"
            )
        end = self.length + n
        if end > self.capacity:
            raise ValueError(
                f"cache capacity exceeded: it holds {self.length} of {self.capacity} positions and {n} more were "
                f"appended; build it with new_cache(batch_size, capacity={end}) or larger"
            )
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad or self.key.requires_grad):
            self.key = torch.cat([self.key[:, :, : self.length], k, self.key[:, :, end:]], dim=2)
            self.value = torch.cat([self.value[:, :, : self.length], v, self.value[:, :, end:]], dim=2)
        else:
            self.key[:, :, self.length : end] = k
            self.value[:, :, self.length : end] = v
        self.length = end
        return self.keys_so_far()

    def keys_so_far(self) -> tuple[Tensor, Tensor]:
        return self.key[:, :, : self.length], self.value[:, :, : self.length]  # (B, Hk, length, Dh)

    def reorder(self, index: Tensor) -> "KVCache":
        """Keep batch rows ``index`` (beam search reordering), in place; returns self."""
        self.key = self.key.index_select(0, index)
        self.value = self.value.index_select(0, index)
        return self

    def reset(self) -> "KVCache":
        self.length = 0
        return self

    def __repr__(self) -> str:
        kind = "static " if self.static else ""
        return f"KVCache({kind}{self.length}/{self.capacity}, key={shape_str(self.key)})"


@register_mechanism(
    "multi-head",
    "multihead",
    "mha",
    "transformer",
    "scaled-dot",
    paper="Vaswani et al. 2017 (arXiv:1706.03762)",
    formula="Concat_i(softmax(Q W_i^Q (K W_i^K)ᵀ / sqrt(d)) V W_i^V) W^O",
)
class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017) with GQA/MQA, RoPE/ALiBi and a KV cache.

    Args:
        embed_dim: features of the query input (and the output, unless ``out_dim``).
        num_heads: H query heads.
        key_dim: features of the key input; default ``embed_dim``.
        value_dim: features of the value input; default ``key_dim``.
        num_kv_heads: Hk key/value heads (GQA; 1 = multi-query); must divide
            ``num_heads``; default ``num_heads``.
        head_dim: Dh; default ``embed_dim // num_heads`` (which must divide).
        out_dim: output features; default ``embed_dim``.
        bias: biases on the four projections.
        dropout: dropout on the attention weights (training only).
        score: "scaled_dot" (default), "dot", "cosine", "general" (a learned
            (H, Dh, Dh) W per head) or "additive" (learned per-head W_q, W_k, v
            of size ``score_hidden_dim``), or a Score instance.
        score_params: options of a parameter-free score (e.g. ``{"beta": 5.0}``).
        normalizer: "softmax" (default) or any normalizer name.
        rope: rotate queries and keys by their positions (RoPE).
        alibi: add ALiBi's per-head distance penalty to the scores.

    ``forward(query, key=None, value=None, *, key_mask=None, attn_mask=None,
    causal=False, cache=None, need_weights=False, positions=None,
    score_mod=None, mask_mod=None, step=None, state=None) -> AttentionOutput``

    * query (B, L, embed_dim) (or one step (B, embed_dim)); key (B, S, key_dim)
      and value (B, S, value_dim) default to query (self-attention).
    * key_mask (B, S) bool, True at real keys (with a cache: S = all cached
      positions including the new ones).
    * attn_mask: bool (True = attend) or float (added), (L, S), (B, L, S) or
      (B, H, L, S).
    * causal: True = query i sees keys j <= i; with a cache the queries are
      the last L of S positions (bottom-right alignment) automatically.
    * cache: a :meth:`new_cache` object; new keys/values are appended and it
      is returned as ``state``. ``state=`` is the same argument under the
      decoder-style name (``step`` is ignored: positions come from the cache).
    * Cross-attention without a cache returns as ``state`` the projected
      keys/values; passed back (``state=out.state``) with the same ``key`` and
      ``value`` tensors, the next call skips their projections (an RNN decoder
      attending to one encoder output at every step).
    * need_weights: return per-head weights (B, H, L, S); otherwise none are
      computed, so fused backends (SDPA) can run the call.

    Returns AttentionOutput(context (B, L, out_dim), weights or None,
    log_prob (B, H, L) for stochastic normalizers, state = the cache).

    Example::

        >>> mha = MultiHeadAttention(16, num_heads=4, num_kv_heads=2, rope=True)
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
        key_dim: Optional[int] = None,
        value_dim: Optional[int] = None,
        num_kv_heads: Optional[int] = None,
        head_dim: Optional[int] = None,
        out_dim: Optional[int] = None,
        bias: bool = True,
        dropout: float = 0.0,
        score: str | Score = "scaled_dot",
        score_params: Optional[Mapping[str, Any]] = None,
        score_hidden_dim: Optional[int] = None,
        normalizer: str = "softmax",
        rope: bool = False,
        rope_base: float = 10000.0,
        alibi: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
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
        if rope and alibi:
            raise ValueError("pass rope=True or alibi=True, not both: each alone encodes positions")
        fk = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.query_dim = embed_dim
        self.key_dim = key_dim or embed_dim
        self.value_dim = value_dim or self.key_dim
        self.num_heads = num_heads
        self.num_kv_heads = Hk
        self.head_dim = head_dim or embed_dim // num_heads
        self.out_dim = out_dim or embed_dim
        self.output_dim = self.out_dim
        self.dropout = check_dropout(dropout)
        self.normalizer = check_normalizer(normalizer)
        Dh = self.head_dim
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

        # the score: a name of the functional registry, parameters per head where it has any
        self._score_fixed: Optional[Score] = None
        self.score_name = score.name if isinstance(score, Score) else score
        if isinstance(score, Score):
            self._score_fixed = score
        elif not isinstance(score, str) or score not in SCORES:
            get_score(score)  # raises the close-match error
        elif SCORES[score] is General:
            self.score_weight = nn.Parameter(torch.empty(num_heads, Dh, Dh, **fk))  # (H, Dh, Dh)
        elif SCORES[score] is Additive:
            Ds = score_hidden_dim or Dh
            self.score_w_q = nn.Parameter(torch.empty(num_heads, Ds, Dh, **fk))  # (H, Ds, Dh)
            self.score_w_k = nn.Parameter(torch.empty(num_heads, Ds, Dh, **fk))  # (H, Ds, Dh)
            self.score_v = nn.Parameter(torch.empty(num_heads, Ds, **fk))  # (H, Ds)
        else:
            self._score_fixed = get_score(score, **dict(score_params or {}))
            if not self._score_fixed.uses_keys:
                raise ValueError(f"score {score!r} ignores the keys; MultiHeadAttention needs a score of q and k")
        if score_params and not (isinstance(score, str) and self._score_fixed is not None):
            raise ValueError(f"score_params are for parameter-free scores; score {self.score_name!r} owns its parameters")
        if score_hidden_dim is not None and not hasattr(self, "score_v"):
            raise ValueError("score_hidden_dim is only used by score='additive'")
        self.rotary = RotaryEmbedding(Dh, base=rope_base) if rope else None
        self.alibi = ALiBi(num_heads, device=device) if alibi else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        for name, p in self.named_parameters(recurse=False):
            if not name.startswith("in_proj_"):  # the score's own parameters
                nn.init.uniform_(p, -1 / math.sqrt(p.shape[-1]), 1 / math.sqrt(p.shape[-1]))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Also load state dicts with separate q_proj / k_proj / v_proj (before the fused in-projection)."""
        if self.fused_in_proj and prefix + "q_proj.weight" in state_dict:
            for kind in ("weight", "bias"):
                parts = [state_dict.pop(f"{prefix}{n}.{kind}", None) for n in ("q_proj", "k_proj", "v_proj")]
                if all(t is not None for t in parts):
                    state_dict[f"{prefix}in_proj_{kind}"] = torch.cat(parts)  # (q|k|v, ...)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def score(self) -> Score:
        """The functional score with this layer's per-head parameters."""
        if self._score_fixed is not None:
            return self._score_fixed
        if hasattr(self, "score_weight"):
            return General(self.score_weight)
        return Additive(self.score_w_q, self.score_w_k, self.score_v)

    def new_cache(self, batch_size: int, capacity: int, *, static: bool = False,
                  device: Any = None, dtype: Any = None) -> KVCache:
        """An empty :class:`KVCache` for ``capacity`` positions of ``batch_size`` sequences."""
        check_dim(batch_size, "batch_size")
        check_dim(capacity, "capacity")
        w = self.k_proj.weight
        fk = {"device": device or w.device, "dtype": dtype or w.dtype}
        shape = (batch_size, self.num_kv_heads, capacity, self.head_dim)  # (B, Hk, C, Dh)
        return KVCache(torch.zeros(shape, **fk), torch.zeros(shape, **fk), static=static)

    def _split(self, x: Tensor, heads: int) -> Tensor:
        B, N, _ = x.shape
        return x.view(B, N, heads, self.head_dim).transpose(1, 2)  # (B, heads, N, Dh)

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
            raise TypeError(f"attn_mask must be a bool (True = attend) or float tensor, got {getattr(m, 'dtype', type(m))}")
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

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor] = None,
        value: Optional[Tensor] = None,
        *,
        key_mask: Optional[Tensor] = None,
        attn_mask: Optional[Tensor] = None,
        causal: bool | str = False,
        cache: Optional[KVCache] = None,
        need_weights: bool = False,
        positions: Optional[Tensor] = None,
        score_mod: Any = None,
        mask_mod: Any = None,
        step: Optional[int] = None,
        state: Optional[KVCache | dict] = None,
    ) -> AttentionOutput:
        if (
            key is None and value is None and cache is None and state is None and key_mask is None
            and attn_mask is None and positions is None and score_mod is None and mask_mod is None
            and not need_weights and (causal is False or causal is True)
            # plain softmax(q kᵀ/sqrt(d)): fused projection, no positions inside, no dropout now
            and self.fused_in_proj and type(self._score_fixed) is ScaledDot and type(self.normalizer) is Softmax
            and self.rotary is None and self.alibi is None and (self.dropout == 0.0 or not self.training)
            and type(query) is Tensor and query.dim() == 3 and query.shape[-1] == self.embed_dim
        ):
            return self._plain_self_attention(query, causal)
        projected = state if isinstance(state, dict) else None
        if state is not None and projected is None:
            if cache is not None and cache is not state:
                raise ValueError("pass the KV cache as cache= or as state=, not both")
            cache = state
        if cache is not None and not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a KVCache from new_cache(), got {type(cache).__name__}")
        one_step = isinstance(query, Tensor) and query.dim() == 2
        if one_step:
            query = query.unsqueeze(1)  # (B, 1, D)
        self._check_input("query", query, self.embed_dim, None)
        B, L, _ = query.shape
        self_attn = key is None
        reuse_static = cache is not None and cache.static and cache.length > 0
        if reuse_static:
            if key is not None or value is not None:
                raise ValueError("the static cache already holds the encoder keys/values; pass key=None, value=None")
        else:
            key = query if key is None else key
            value = key if value is None else value
            if not (self_attn and self.fused_in_proj):  # else key is value is the checked query
                self._check_input("key", key, self.key_dim, B)
                self._check_input("value", value, self.value_dim, B)
            if key.shape[1] != value.shape[1]:
                raise ValueError(f"key has {key.shape[1]} positions but value has {value.shape[1]}; give one value per key")
        if cache is not None and cache.batch_size != B:
            raise ValueError(f"cache was built for batch {cache.batch_size} but query has batch {B}")

        offset = cache.length if (cache is not None and not cache.static) else 0
        fused = self_attn and not reuse_static
        if fused:  # one (B, L, D) x (D, (H + 2 Hk) Dh) matmul instead of three (nanoGPT's c_attn)
            if self.fused_in_proj:
                qkv = nn.functional.linear(query, self.in_proj_weight, self.in_proj_bias)  # (B, L, (H + 2 Hk) Dh)
            else:
                qkv = nn.functional.linear(
                    query, torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]),
                    None if self.q_proj.bias is None else torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
                )  # (B, L, (H + 2 Hk) Dh)
            q_lin, k_lin, v_lin = qkv.split([self.q_proj.out_features, self.k_proj.out_features,
                                             self.v_proj.out_features], dim=-1)
        q = self._split(q_lin if fused else self.q_proj(query), self.num_heads)  # (B, H, L, Dh)
        # cross-attention reuses projected keys/values while the weights are unchanged
        versions = None if self_attn else (self.k_proj.weight._version, self.v_proj.weight._version)
        new_state: Any = cache
        if reuse_static:
            k, v = cache.keys_so_far()  # (B, Hk, S, Dh)
        elif (
            cache is None and projected is not None and not self_attn and positions is None
            and projected.get("key") is key and projected.get("value") is value
            and projected.get("versions") == versions
        ):
            k, v = projected["k"], projected["v"]  # (B, Hk, S, Dh) from the previous step
            new_state = projected
        else:
            k = self._split(k_lin if fused else self.k_proj(key), self.num_kv_heads)  # (B, Hk, S_new, Dh)
            v = self._split(v_lin if fused else self.v_proj(value), self.num_kv_heads)  # (B, Hk, S_new, Dh)
            if self.rotary is not None:
                if positions is not None and not self_attn:
                    raise ValueError("positions= applies to self-attention (key=None); cross-attention keys get 0..S-1")
                k = self.rotary(k, offset=offset, positions=positions)
            if cache is not None:
                k, v = cache.append(k, v)  # (B, Hk, S, Dh)
            elif not self_attn:
                new_state = {"key": key, "value": value, "versions": versions, "k": k, "v": v}
        if self.rotary is not None:
            q = self.rotary(q, offset=offset, positions=positions)
        S = k.shape[2]

        mask = None
        if key_mask is not None:
            if not isinstance(key_mask, Tensor) or key_mask.dtype != torch.bool or key_mask.shape != (B, S):
                got = f"{key_mask.dtype} {shape_str(key_mask)}" if isinstance(key_mask, Tensor) else type(key_mask).__name__
                raise ValueError(
                    f"key_mask must be a bool tensor (B, S) = ({B}, {S}), True at real keys (with a cache S counts "
                    f"every cached position); got {got}"
                )
            mask = key_mask[:, None, None, :]  # (B, 1, 1, S)
        if attn_mask is not None:
            mask = fmasks.combine(mask, self._attn_mask(attn_mask, B, L, S))
        causal_arg: bool | str = causal
        if causal is True and cache is not None and not cache.static:
            causal_arg = "bottom_right"  # the L queries are the last L of the S cached positions
        if self.alibi is not None:
            alibi_mod = self.alibi.score_mod(q_offset=S - L if (cache is not None and not cache.static) else 0)
            if score_mod is None:
                score_mod = alibi_mod
            else:
                user_mod = score_mod

                def score_mod(s, b, h, qi, ki):  # noqa: F811  (ALiBi, then the caller's)
                    return user_mod(alibi_mod(s, b, h, qi, ki), b, h, qi, ki)

        stochastic = self.normalizer.stochastic
        res = attend(
            q, k, v,
            score=self.score(),
            normalizer=self.normalizer,
            mask=mask,
            causal=causal_arg,
            score_mod=score_mod,
            mask_mod=mask_mod,
            dropout_p=self.dropout if self.training else 0.0,
            return_weights=need_weights,
            return_log_prob=stochastic,
        )
        res = res if isinstance(res, tuple) else (res,)
        out = res[0].transpose(1, 2).reshape(B, L, self.num_heads * self.head_dim)  # (B, L, H*Dh)
        out = self.out_proj(out)  # (B, L, out_dim)
        w = res[1] if need_weights else None  # (B, H, L, S)
        lp = res[-1] if stochastic else None  # (B, H, L)
        if one_step:
            out = out.squeeze(1)  # (B, out_dim)
            w = w.squeeze(2) if w is not None else None  # (B, H, S)
            lp = lp.squeeze(2) if lp is not None else None  # (B, H)
        return AttentionOutput(out, w, lp, new_state)

    def _plain_self_attention(self, x: Tensor, causal: bool) -> AttentionOutput:
        """The forward of the commonest call (a Transformer layer's self-attention) with nothing to
        decide: nanoGPT's ``c_attn`` -> SDPA -> ``c_proj``; same numbers as the general path."""
        B, L, _ = x.shape
        H, Hk, Dh = self.num_heads, self.num_kv_heads, self.head_dim
        qkv = nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, L, (H + 2 Hk) Dh)
        q, k, v = qkv.split([H * Dh, Hk * Dh, Hk * Dh], dim=-1)
        q, k, v = self._split(q, H), self._split(k, Hk), self._split(v, Hk)  # (B, H|Hk, L, Dh)
        out = attend(q, k, v, score=self._score_fixed, normalizer=self.normalizer, causal=causal)  # (B, H, L, Dh)
        out = self.out_proj(out.transpose(1, 2).reshape(B, L, H * Dh))  # (B, L, out_dim)
        return AttentionOutput(out, None, None, None)

    def extra_repr(self) -> str:
        return (
            f"{self.embed_dim}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}, "
            f"head_dim={self.head_dim}, key_dim={self.key_dim}, value_dim={self.value_dim}, "
            f"out_dim={self.out_dim}, score={self.score_name!r}, rope={self.rotary is not None}, "
            f"alibi={self.alibi is not None}"
        )
