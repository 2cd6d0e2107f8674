"""Transformer layers: the pre-/post-norm block, the feed-forward sublayer, the positional factory.

Vaswani et al. 2017, "Attention Is All You Need" (arXiv:1706.03762). Every layer is
``x = x + Drop(Attn(LN(x))); x = x + Drop(FFN(LN(x)))`` (pre-norm, ``norm_first=True``,
Xiong et al. 2020, arXiv:2002.04745) or ``x = LN(x + Drop(Attn(x))); x = LN(x + Drop(FFN(x)))``
(post-norm, the paper's), with ``FFN(x) = W_2 act(W_1 x)``; a decoder layer adds cross-attention
over the encoder's memory between the two.

The attention inside is :class:`attnkit.nn.MultiHeadAttention`, so any score of the registry drives
it; ``window=W`` restricts each query to keys within W positions (local attention); positions are
``learned``, ``sinusoidal``, ``rope`` or ``alibi`` (:data:`POSITIONAL`).

Shape legend: B batch, L query positions, S key positions, D model width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..core.scores import SCORES
from ..nn.kv_cache import KVCache
from ..nn.multihead import MultiHeadAttention
from ..nn.positional import ALiBi, LearnedPositionalEncoding, RotaryEmbedding, SinusoidalPositionalEncoding
from .registry import ModelConfig

__all__ = ["POSITIONAL", "ACTIVATIONS", "FeedForward", "TransformerLayer", "init_gpt_style", "attention_options"]

#: activation name -> module class (the feed-forward sublayer takes the function below; BERT's MLM head the module)
ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}
#: the same activations as functions: the feed-forward sublayer calls these (one module call fewer per layer)
_ACTIVATION_FNS: dict[str, Callable[[Tensor], Tensor]] = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}
assert _ACTIVATION_FNS.keys() == ACTIVATIONS.keys()


PositionalFactory = Callable[[int, int, int], tuple[Optional[nn.Module], dict[str, Any]]]


def _learned(dim: int, num_heads: int, max_len: int) -> tuple[Optional[nn.Module], dict[str, Any]]:
    return LearnedPositionalEncoding(dim, max_len=max_len), {}


def _sinusoidal(dim: int, num_heads: int, max_len: int) -> tuple[Optional[nn.Module], dict[str, Any]]:
    return SinusoidalPositionalEncoding(dim), {}


def _rope(dim: int, num_heads: int, max_len: int) -> tuple[Optional[nn.Module], dict[str, Any]]:
    return None, {"positional": RotaryEmbedding(dim // num_heads)}


def _alibi(dim: int, num_heads: int, max_len: int) -> tuple[Optional[nn.Module], dict[str, Any]]:
    return None, {"positional": ALiBi(num_heads)}


def _no_positions(dim: int, num_heads: int, max_len: int) -> tuple[Optional[nn.Module], dict[str, Any]]:
    return None, {}


#: positional encoding name -> ``f(dim, num_heads, max_len) -> (module added to the embeddings or
#: None, MultiHeadAttention options of the self-attention)``. RoPE and ALiBi live inside the attention.
POSITIONAL: dict[str, PositionalFactory] = {
    "learned": _learned,
    "sinusoidal": _sinusoidal,
    "rope": _rope,
    "alibi": _alibi,
    "none": _no_positions,
}


def check_choice(name: str, value: Any, options: Sequence[str]) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")


def check_int(name: str, value: Any, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_common(*, dim: int, num_heads: int, dropout: float, positional: str, score: str,
                  window: Optional[int], activation: str) -> None:
    check_int("dim", dim)
    check_int("num_heads", num_heads)
    if dim % num_heads:
        divisors = [h for h in range(1, dim + 1) if dim % h == 0 and h <= 32]
        raise ValueError(f"num_heads={num_heads} does not divide dim={dim}; pick one of {divisors}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    check_choice("positional", positional, list(POSITIONAL))
    check_choice("score", score, sorted(SCORES))
    check_choice("activation", activation, list(ACTIVATIONS))
    if positional == "rope" and (dim // num_heads) % 2:
        raise ValueError(
            f"positional='rope' rotates pairs of features: dim/num_heads = {dim // num_heads} must be even"
        )
    if window is not None:
        check_int("window", window, minimum=0)


@dataclass(eq=False)
class StackConfig(ModelConfig):
    """The fields a stack of Transformer layers over a token vocabulary shares (GPT's and BERT's).

    vocab_size: V. block_size: the longest context (positions 0..block_size-1).
    num_layers, num_heads, dim: depth, heads, width D; ffn_mult: FFN width = ffn_mult·D.
    dropout: on embeddings, attention weights and residual branches.
    positional: "learned", "sinusoidal", "rope", "alibi" or "none" (:data:`POSITIONAL`).
    score: the attention score ("scaled_dot"; "additive", "general", "cosine" ...).
    window: local attention, each position sees the previous ``window`` only.
    norm_first: pre-norm (GPT-2) or post-norm. activation: of the FFN. bias: in every linear layer.
    """

    vocab_size: int
    block_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    dim: int = 128
    ffn_mult: int = 4
    dropout: float = 0.0
    positional: str = "learned"
    score: str = "scaled_dot"
    window: Optional[int] = None
    norm_first: bool = True
    activation: str = "gelu"
    bias: bool = True

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size, minimum=2)
        check_int("block_size", self.block_size)
        check_int("num_layers", self.num_layers)
        check_int("ffn_mult", self.ffn_mult)
        check_common(dim=self.dim, num_heads=self.num_heads, dropout=self.dropout, positional=self.positional,
                     score=self.score, window=self.window, activation=self.activation)


class FeedForward(nn.Module):
    """Position-wise feed-forward: ``FFN(x) = W_2 act(W_1 x + b_1) + b_2`` (Vaswani et al. 2017)."""

    def __init__(self, dim: int, *, hidden_dim: int, activation: str = "gelu", bias: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, hidden_dim, bias=bias)
        self.activation = activation
        self.act = _ACTIVATION_FNS[activation]
        self.proj = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.act(self.fc(x)))  # (B, L, D)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"


def _window_mask(L: int, S: int, window: int, device: torch.device) -> Tensor:
    """(L, S) bool: the L queries are the last L of S positions; query i sees keys within ``window``."""
    q = torch.arange(S - L, S, device=device)[:, None]  # (L, 1) absolute positions of the queries
    k = torch.arange(S, device=device)[None, :]  # (1, S)
    return (q - k).abs() <= window  # (L, S)


class TransformerLayer(nn.Module):
    """One encoder layer (self-attention, FFN) or decoder layer (+ cross-attention), pre- or post-norm.

    ``forward(x (B, L, D), *, key_allowed=None (B, S), causal=False,
    cache=None, memory=None (B, S_src, D), memory_allowed=None (B, S_src),
    cross_cache=None, need_weights=False) -> (x, self weights, cross weights)``.
    ``key_allowed`` / ``memory_allowed`` are bool, True = the key may be attended
    (a real token), False = padding (torch's ``key_padding_mask`` is the negation).
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        norm_first: bool = True,
        cross_attention: bool = False,
        window: Optional[int] = None,
        activation: str = "gelu",
        bias: bool = True,
        attention: Optional[dict[str, Any]] = None,
        cross_options: Optional[dict[str, Any]] = None,
    ) -> None:
        super().__init__()
        attention = dict(attention or {})
        self.norm_first = norm_first
        self.window = window
        self.self_attn = MultiHeadAttention(dim, num_heads=num_heads, dropout=attn_dropout, bias=bias, **attention)
        self.norm1 = nn.LayerNorm(dim, bias=bias)
        self.cross_attn: Optional[MultiHeadAttention] = None
        if cross_attention:
            self.cross_attn = MultiHeadAttention(
                dim, num_heads=num_heads, dropout=attn_dropout, bias=bias, **dict(cross_options or {})
            )
            self.norm2 = nn.LayerNorm(dim, bias=bias)
        self.ffn = FeedForward(dim, hidden_dim=ffn_dim, activation=activation, bias=bias)
        self.norm3 = nn.LayerNorm(dim, bias=bias)
        # None without dropout: three module calls fewer per layer in the hot loop
        self.drop: Optional[nn.Dropout] = nn.Dropout(dropout) if dropout > 0 else None

    def _self(self, h: Tensor, key_allowed: Optional[Tensor], causal: bool, cache: Optional[KVCache],
              need_weights: bool) -> tuple[Tensor, Optional[Tensor]]:
        attn_mask = None
        if causal and cache is not None and h.shape[1] == 1:
            causal = False  # one new query at the end of the cache sees every cached key: no mask to build
        if self.window is not None:
            S = (cache.length if cache is not None else 0) + h.shape[1]
            attn_mask = _window_mask(h.shape[1], S, self.window, h.device)  # (L, S)
        out = self.self_attn(h, key_allowed=key_allowed, attn_mask=attn_mask, causal=causal, cache=cache,
                             need_weights=need_weights)
        return out.context, out.weights

    def _cross(self, h: Tensor, memory: Optional[Tensor], memory_allowed: Optional[Tensor],
               cross_cache: Optional[KVCache], need_weights: bool) -> tuple[Tensor, Optional[Tensor]]:
        assert self.cross_attn is not None
        reuse = cross_cache is not None and cross_cache.length > 0
        out = self.cross_attn(h, None if reuse else memory, key_allowed=memory_allowed, cache=cross_cache,
                              need_weights=need_weights)
        return out.context, out.weights

    def forward(
        self,
        x: Tensor,
        *,
        key_allowed: Optional[Tensor] = None,
        causal: bool = False,
        cache: Optional[KVCache] = None,
        memory: Optional[Tensor] = None,
        memory_allowed: Optional[Tensor] = None,
        cross_cache: Optional[KVCache] = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        cross_w = None
        d = self.drop  # None without dropout
        if self.norm_first:
            a, self_w = self._self(self.norm1(x), key_allowed, causal, cache, need_weights)
            x = x + (a if d is None else d(a))
            if self.cross_attn is not None:
                c, cross_w = self._cross(self.norm2(x), memory, memory_allowed, cross_cache, need_weights)
                x = x + (c if d is None else d(c))
            f = self.ffn(self.norm3(x))
            x = x + (f if d is None else d(f))
        else:
            a, self_w = self._self(x, key_allowed, causal, cache, need_weights)
            x = self.norm1(x + (a if d is None else d(a)))
            if self.cross_attn is not None:
                c, cross_w = self._cross(x, memory, memory_allowed, cross_cache, need_weights)
                x = self.norm2(x + (c if d is None else d(c)))
            f = self.ffn(x)
            x = self.norm3(x + (f if d is None else d(f)))
        return x, self_w, cross_w


def attention_options(score: str, positional_opts: dict[str, Any], num_kv_heads: Optional[int]) -> dict[str, Any]:
    return {"score": score, "num_kv_heads": num_kv_heads, **positional_opts}


def init_gpt_style(module: nn.Module, num_layers: int) -> None:
    """nanoGPT's init: N(0, 0.02) weights, zero biases, residual projections N(0, 0.02/sqrt(2·layers))."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            std = 0.02 / math.sqrt(2 * num_layers) if name.endswith(("out_proj", "ffn.proj")) else 0.02
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        elif isinstance(m, MultiHeadAttention) and m.in_proj_weight is not None:  # fused q|k|v, nanoGPT's c_attn
            nn.init.normal_(m.in_proj_weight, mean=0.0, std=0.02)
            if m.in_proj_bias is not None:
                nn.init.zeros_(m.in_proj_bias)
