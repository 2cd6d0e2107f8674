"""Transformers: the encoder-decoder, the bidirectional encoder and the causal decoder.

* :class:`Transformer` — Vaswani et al. 2017, "Attention Is All You Need"
  (arXiv:1706.03762): an encoder of self-attention layers and a decoder of
  causal self-attention + cross-attention layers, for the sequence-to-sequence
  tasks (numbers, dates, g2p, reverse, sort).
* :class:`BERT` — Devlin et al. 2018 (arXiv:1810.04805): the encoder alone,
  bidirectional, with a masked-language-model head and a classification head.
* :class:`GPT` — Radford et al. 2018/2019 (GPT, GPT-2): the decoder alone,
  causal, with KV-cached generation (greedy, temperature, top-k, top-p).

Every layer is ``x = x + Drop(Attn(LN(x))); x = x + Drop(FFN(LN(x)))``
(pre-norm, ``norm_first=True``, Xiong et al. 2020, arXiv:2002.04745) or
``x = LN(x + Drop(Attn(x))); x = LN(x + Drop(FFN(x)))`` (post-norm, the
paper's), with ``FFN(x) = W_2 act(W_1 x)``.

The attention inside is :class:`attnkit.nn.MultiHeadAttention`, so any score
of the registry drives it (``score="scaled_dot"`` by default; ``additive``,
``general``, ``cosine`` also run), ``window=W`` restricts each query to keys
within W positions (local attention), positions are ``learned``,
``sinusoidal``, ``rope`` or ``alibi`` (:data:`POSITIONAL`), and
``need_weights=True`` returns the (B, H, L, S) weights of every layer and head
(for plotting). Without it the fused SDPA backend runs the attention.

Shape legend: B batch, L target positions, S source positions, D model width,
H heads, V vocabulary.

Example::

    >>> gpt = GPT(65, block_size=64, num_layers=2, num_heads=2, dim=32)
    >>> out = gpt(torch.zeros(1, 5, dtype=torch.long), need_weights=True)
    >>> out.logits.shape, len(out.weights), out.weights[0].shape
    (torch.Size([1, 5, 65]), 2, torch.Size([1, 2, 5, 5]))
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..core.scores import SCORES
from ..nn.kv_cache import KVCache
from ..nn.multihead import MultiHeadAttention
from ..nn.positional import ALiBi, LearnedPositionalEncoding, RotaryEmbedding, SinusoidalPositionalEncoding
from .registry import register_model

__all__ = [
    "POSITIONAL",
    "ACTIVATIONS",
    "FeedForward",
    "TransformerLayer",
    "GPT",
    "BERT",
    "Transformer",
    "LMOutput",
    "EncoderOutput",
    "Seq2SeqOutput",
    "sample_next",
    "filter_logits",
]

PAD, BOS, EOS = 0, 1, 2  # the special ids of attnkit.data.Vocab

#: activation name -> module class (the feed-forward sublayer takes the function below; BERT's MLM head the module)
ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}
#: the same activations as functions: the feed-forward sublayer calls these (one module call fewer per layer)
_ACTIVATION_FNS: dict[str, Callable[[Tensor], Tensor]] = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu}
assert _ACTIVATION_FNS.keys() == ACTIVATIONS.keys()


def _learned(dim: int, max_len: int) -> tuple[Optional[nn.Module], dict[str, Any]]:
    return LearnedPositionalEncoding(dim, max_len=max_len), {}


def _sinusoidal(dim: int, max_len: int) -> tuple[Optional[nn.Module], dict[str, Any]]:
    return SinusoidalPositionalEncoding(dim), {}


def _rope(dim: int, max_len: int) -> tuple[Optional[nn.Module], dict[str, Any]]:
    return None, {"rope": True}


def _alibi(dim: int, max_len: int) -> tuple[Optional[nn.Module], dict[str, Any]]:
    return None, {"alibi": True}


def _no_positions(dim: int, max_len: int) -> tuple[Optional[nn.Module], dict[str, Any]]:
    return None, {}


#: positional encoding name -> ``f(dim, max_len) -> (module added to the embeddings or None,
#: MultiHeadAttention options of the self-attention)``. RoPE and ALiBi live inside the attention.
POSITIONAL: dict[str, Callable[[int, int], tuple[Optional[nn.Module], dict[str, Any]]]] = {
    "learned": _learned,
    "sinusoidal": _sinusoidal,
    "rope": _rope,
    "alibi": _alibi,
    "none": _no_positions,
}


def _choice(name: str, value: Any, options: Sequence[str]) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")


def _check_int(name: str, value: Any, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_common(*, dim: int, num_heads: int, dropout: float, positional: str, score: str,
                  window: Optional[int], activation: str) -> None:
    _check_int("dim", dim)
    _check_int("num_heads", num_heads)
    if dim % num_heads:
        divisors = [h for h in range(1, dim + 1) if dim % h == 0 and h <= 32]
        raise ValueError(f"num_heads={num_heads} does not divide dim={dim}; pick one of {divisors}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    _choice("positional", positional, list(POSITIONAL))
    _choice("score", score, sorted(SCORES))
    _choice("activation", activation, list(ACTIVATIONS))
    if positional == "rope" and (dim // num_heads) % 2:
        raise ValueError(f"positional='rope' rotates pairs of features: dim/num_heads = {dim // num_heads} must be even")
    if window is not None:
        _check_int("window", window, minimum=0)


# ----------------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------------
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

    ``forward(x (B, L, D), *, key_mask=None (B, S) True = real, causal=False,
    cache=None, memory=None (B, S_src, D), memory_mask=None (B, S_src),
    cross_cache=None, need_weights=False) -> (x, self weights, cross weights)``.
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
        if attention.pop("rope", False):  # RoPE / ALiBi: one positional object inside the attention
            attention["positional"] = RotaryEmbedding(dim // num_heads)
        if attention.pop("alibi", False):
            attention["positional"] = ALiBi(num_heads)
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

    def _self(self, h: Tensor, key_mask: Optional[Tensor], causal: bool, cache: Optional[KVCache],
              need_weights: bool) -> tuple[Tensor, Optional[Tensor]]:
        attn_mask = None
        if causal and cache is not None and h.shape[1] == 1:
            causal = False  # one new query at the end of the cache sees every cached key: no mask to build
        if self.window is not None:
            S = (cache.length if cache is not None else 0) + h.shape[1]
            attn_mask = _window_mask(h.shape[1], S, self.window, h.device)  # (L, S)
        out = self.self_attn(h, key_mask=key_mask, attn_mask=attn_mask, causal=causal, cache=cache,
                             need_weights=need_weights)
        return out.context, out.weights

    def _cross(self, h: Tensor, memory: Optional[Tensor], memory_mask: Optional[Tensor],
               cross_cache: Optional[KVCache], need_weights: bool) -> tuple[Tensor, Optional[Tensor]]:
        assert self.cross_attn is not None
        reuse = cross_cache is not None and cross_cache.length > 0
        out = self.cross_attn(h, None if reuse else memory, key_mask=memory_mask, cache=cross_cache,
                              need_weights=need_weights)
        return out.context, out.weights

    def forward(
        self,
        x: Tensor,
        *,
        key_mask: Optional[Tensor] = None,
        causal: bool = False,
        cache: Optional[KVCache] = None,
        memory: Optional[Tensor] = None,
        memory_mask: Optional[Tensor] = None,
        cross_cache: Optional[KVCache] = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        cross_w = None
        d = self.drop  # None without dropout
        if self.norm_first:
            a, self_w = self._self(self.norm1(x), key_mask, causal, cache, need_weights)
            x = x + (a if d is None else d(a))
            if self.cross_attn is not None:
                c, cross_w = self._cross(self.norm2(x), memory, memory_mask, cross_cache, need_weights)
                x = x + (c if d is None else d(c))
            f = self.ffn(self.norm3(x))
            x = x + (f if d is None else d(f))
        else:
            a, self_w = self._self(x, key_mask, causal, cache, need_weights)
            x = self.norm1(x + (a if d is None else d(a)))
            if self.cross_attn is not None:
                c, cross_w = self._cross(x, memory, memory_mask, cross_cache, need_weights)
                x = self.norm2(x + (c if d is None else d(c)))
            f = self.ffn(x)
            x = self.norm3(x + (f if d is None else d(f)))
        return x, self_w, cross_w


def _attention_options(score: str, positional_opts: dict[str, Any], num_kv_heads: Optional[int]) -> dict[str, Any]:
    return {"score": score, "num_kv_heads": num_kv_heads, **positional_opts}


def _init_gpt_style(module: nn.Module, num_layers: int) -> None:
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


def _cross_entropy_metrics(logits: Tensor, targets: Tensor, *, ignore_index: int = -100,
                           label_smoothing: float = 0.0, accuracy: bool = True,
                           tokens: Optional[int] = None) -> tuple[Tensor, dict[str, float]]:
    """Mean cross-entropy over non-ignored targets, with {"loss", "tokens"} and, when
    ``accuracy`` (the models pass ``not self.training``: evaluation), the top-1 accuracy;
    a training step does not pay for it (nothing reads it there). ``tokens``: the
    caller's count of targets when it knows it (a GPT training step: every position
    is a target), which saves counting them."""
    V = logits.shape[-1]
    flat = logits.reshape(-1, V)  # (N, V)
    tgt = targets.reshape(-1)  # (N,)
    loss = F.cross_entropy(flat, tgt, ignore_index=ignore_index, label_smoothing=label_smoothing)
    if tokens is not None and not accuracy:
        return loss, {"loss": float(loss.detach()), "tokens": tokens}
    with torch.no_grad():
        keep = tgt != ignore_index
        n = int(keep.sum())
        if not accuracy:
            return loss, {"loss": float(loss.detach()), "tokens": n}
        # correct where the target's logit is the largest: a gather and an amax cost a
        # quarter of an argmax over V on CPU (ties, of measure zero, count as correct)
        top = flat.gather(1, tgt.clamp(min=0).unsqueeze(1)).squeeze(1) >= flat.amax(-1)  # (N,)
        acc = float((top & keep).sum()) / max(n, 1)
    return loss, {"loss": float(loss.detach()), "accuracy": acc, "tokens": n}


# ----------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------
def filter_logits(logits: Tensor, *, top_k: Optional[int] = None, top_p: Optional[float] = None) -> Tensor:
    """Logits (B, V) with everything outside the top-k / the top-p nucleus set to -inf.

    top-k keeps the k largest (Fan et al. 2018, arXiv:1805.04833); top-p keeps
    the smallest set whose probability reaches p (Holtzman et al. 2019,
    arXiv:1904.09751). The most likely token always survives.
    """
    if top_k is not None:
        _check_int("top_k", top_k)
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


#: ``--attention NAME`` for a Transformer: a score of the registry, or local (windowed) attention
_LOCAL_WINDOW = 8
_ATTENTION_NAMES = {"multi-head": {}, "multihead": {}, "mha": {}, "transformer": {},
                    "local": {"window": _LOCAL_WINDOW}, "local-m": {"window": _LOCAL_WINDOW}}


def _resolve_overrides(cls: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """CLI-style overrides (``attention``, ``hidden_dim`` ...) as constructor options of ``cls``."""
    import inspect

    out = {k: v for k, v in overrides.items() if v is not None}
    for rnn_only in ("decoder", "cell"):
        if rnn_only in out:
            raise ValueError(
                f"--{rnn_only} configures the RNN seq2seq model; {cls.__name__} has no {rnn_only} "
                f"(drop it, or pass --model seq2seq)"
            )
    att = out.pop("attention", None)
    if att is not None:
        key = str(att).strip().lower()
        if key in _ATTENTION_NAMES:
            out.update(_ATTENTION_NAMES[key])
        elif key in SCORES or key.replace("-", "_") in SCORES:
            out["score"] = key if key in SCORES else key.replace("-", "_")
        else:
            valid = sorted(set(SCORES) | set(_ATTENTION_NAMES))
            raise ValueError(f"--attention {att!r} is not a score a {cls.__name__} can use; valid: {', '.join(valid)}")
    hidden, embed = out.pop("hidden_dim", None), out.pop("embed_dim", None)
    if hidden is not None or embed is not None:
        if hidden is not None and embed is not None and hidden != embed:
            raise ValueError(f"a {cls.__name__} has one width: --hidden-dim {hidden} and --embed-dim {embed} differ")
        out["dim"] = hidden if hidden is not None else embed
    params = inspect.signature(cls.__init__).parameters
    bad = [k for k in out if k not in params or k == "self"]
    if bad:
        valid = [k for k in params if k not in ("self",)]
        raise ValueError(f"{cls.__name__} has no option {', '.join(map(repr, bad))}; its options: {', '.join(valid)}")
    return out


# ----------------------------------------------------------------------------------------------
# GPT
# ----------------------------------------------------------------------------------------------
class LMOutput(NamedTuple):
    logits: Tensor  # (B, L, V)
    weights: Optional[list[Tensor]] = None  # per layer (B, H, L, S)
    cache: Optional[list[KVCache]] = None


@register_model("gpt", "decoder-only")
class GPT(nn.Module):
    """Decoder-only Transformer language model (GPT; Radford et al. 2018, 2019), nanoGPT's layout.

    ``p(x_t | x_<t) = softmax(W_e h_t^L)``, ``h^l = Block_l(h^{l-1})`` with causal self-attention,
    ``h^0 = E[x] (+ P)``; the output matrix is tied to the embedding (Press & Wolf 2016).

    Args:
        vocab_size: V.
        block_size: the longest context (positions 0..block_size-1).
        num_layers, num_heads, dim: depth, heads, width D. ``ffn_mult``: FFN width = ffn_mult·D.
        dropout: on embeddings, attention weights and residual branches.
        positional: "learned" (GPT's), "sinusoidal", "rope", "alibi" or "none".
        score: attention score ("scaled_dot"; "additive", "general", "cosine" ...).
        window: local attention, each character sees the previous ``window`` only.
        norm_first: pre-norm (GPT-2) or post-norm.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        block_size: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        dim: int = 128,
        ffn_mult: int = 4,
        dropout: float = 0.0,
        positional: str = "learned",
        score: str = "scaled_dot",
        window: Optional[int] = None,
        norm_first: bool = True,
        activation: str = "gelu",
        bias: bool = True,
        num_kv_heads: Optional[int] = None,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        _check_int("vocab_size", vocab_size, minimum=2)
        _check_int("block_size", block_size)
        _check_int("num_layers", num_layers)
        _check_int("ffn_mult", ffn_mult)
        _check_common(dim=dim, num_heads=num_heads, dropout=dropout, positional=positional, score=score,
                      window=window, activation=activation)
        self.config = {
            "model": "gpt", "vocab_size": vocab_size, "block_size": block_size, "num_layers": num_layers,
            "num_heads": num_heads, "dim": dim, "ffn_mult": ffn_mult, "dropout": dropout,
            "positional": positional, "score": score, "window": window, "norm_first": norm_first,
            "activation": activation, "bias": bias, "num_kv_heads": num_kv_heads, "tie_weights": tie_weights,
        }
        self.vocab_size, self.block_size, self.num_layers = vocab_size, block_size, num_layers
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.pos_emb, pos_opts = POSITIONAL[positional](dim, block_size)
        self.drop: Optional[nn.Dropout] = nn.Dropout(dropout) if dropout > 0 else None
        self.layers = nn.ModuleList(
            TransformerLayer(dim, num_heads=num_heads, ffn_dim=ffn_mult * dim, dropout=dropout,
                             attn_dropout=dropout, norm_first=norm_first, window=window, activation=activation,
                             bias=bias, attention=_attention_options(score, pos_opts, num_kv_heads))
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim, bias=bias) if norm_first else nn.Identity()
        # tied output (Press & Wolf 2016) reads tok_emb.weight directly: no shared tensor in the state_dict
        self.lm_head = None if tie_weights else nn.Linear(dim, vocab_size, bias=False)
        _init_gpt_style(self, num_layers)

    @classmethod
    def config_for_task(cls, task: Any, **overrides: Any) -> dict[str, Any]:
        """Sized for a language-modelling task: its vocabulary and block size (nanoGPT's baby GPT otherwise)."""
        if not hasattr(task, "vocab") or not hasattr(task, "encode_prompt"):
            raise ValueError(f"gpt is a language model; task {task.name!r} is not language modelling "
                             "(use attnkit train shakespeare --model gpt, or --model transformer for translation tasks)")
        defaults = dict(getattr(task, "model_defaults", {}) or {})
        cfg = {"model": "gpt", "vocab_size": len(task.vocab), "block_size": getattr(task, "block_size", 256)}
        cfg.update({k: v for k, v in defaults.items() if k in _GPT_KEYS})
        cfg.update(_resolve_overrides(cls, overrides))
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

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Next-token cross-entropy of ``batch.x`` (B, T) against ``batch.y`` (B, T)."""
        logits = self(batch.x).logits  # (B, T, V)
        if self.training:  # every position is a target: B·T tokens, no count to take
            return _cross_entropy_metrics(logits, batch.y, accuracy=False, tokens=batch.y.numel())
        return _cross_entropy_metrics(logits, batch.y)

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

        ``temperature=0`` is greedy; ``suppress_ids`` are never produced (e.g. the
        vocabulary's PAD/BOS/EOS/UNK, which a character LM never sees as targets). Past ``block_size`` the context is the last
        ``block_size`` tokens (nanoGPT's crop); with ``use_cache`` the KV cache
        serves every step until the context is full, then the window is
        recomputed each step, so cached and uncached generation give the same tokens.
        """
        idx = torch.as_tensor(prompt_ids, dtype=torch.long, device=self.tok_emb.weight.device)
        if idx.dim() == 1:
            idx = idx.unsqueeze(0)  # (1, L)
        if idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError(f"prompt_ids must hold at least one token, shape (L,) or (B, L); got {tuple(idx.shape)}")
        if int(idx.max()) >= self.vocab_size or int(idx.min()) < 0:
            raise ValueError(f"prompt_ids hold ids outside 0..{self.vocab_size - 1}; encode the prompt with the task's vocabulary")
        if idx.shape[1] > self.block_size:
            raise ValueError(
                f"the prompt has {idx.shape[1]} tokens but the model's block_size is {self.block_size}; "
                f"pass at most its last {self.block_size} tokens"
            )
        _check_int("max_new_tokens", max_new_tokens, minimum=0)
        banned = None
        if suppress_ids:
            banned = torch.as_tensor(list(suppress_ids), dtype=torch.long, device=idx.device)
            if int(banned.min()) < 0 or int(banned.max()) >= self.vocab_size:
                raise ValueError(f"suppress_ids must be ids in 0..{self.vocab_size - 1}, got {list(suppress_ids)}")
        was_training = self.training
        self.eval()
        try:
            cache = self.new_cache(idx.shape[0]) if use_cache else None
            feed = idx
            for _ in range(max_new_tokens):
                if cache is not None and cache[0].length + feed.shape[1] > self.block_size:
                    for c in cache:
                        c.reset()  # context full: recompute the window (same as uncached)
                    feed = idx[:, -self.block_size :]
                if cache is None:
                    feed = idx[:, -self.block_size :]  # (B, <=block)
                logits = self(feed, cache=cache, last_only=True).logits[:, -1]  # (B, V)
                if banned is not None:
                    logits = logits.index_fill(-1, banned, float("-inf"))
                nxt = sample_next(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
                idx = torch.cat([idx, nxt[:, None]], dim=1)  # (B, L+1)
                feed = nxt[:, None]  # (B, 1)
        finally:
            self.train(was_training)
        return idx

    @torch.no_grad()
    def attention_maps(self, idx: Tensor) -> list[Tensor]:
        """The (B, H, L, L) attention weights of every layer for ids ``idx`` (B, L)."""
        was = self.training
        self.eval()
        try:
            return self(idx, need_weights=True).weights or []
        finally:
            self.train(was)


_GPT_KEYS = {"block_size", "num_layers", "num_heads", "dim", "ffn_mult", "dropout", "positional", "score", "window",
             "norm_first", "activation", "bias", "num_kv_heads", "tie_weights"}


# ----------------------------------------------------------------------------------------------
# BERT
# ----------------------------------------------------------------------------------------------
class EncoderOutput(NamedTuple):
    logits: Tensor  # masked-LM logits (B, L, V); or class logits (B, C) when the model classifies
    hidden: Tensor  # (B, L, D)
    weights: Optional[list[Tensor]] = None  # per layer (B, H, L, L)


@register_model("bert", "encoder-only")
class BERT(nn.Module):
    """Bidirectional Transformer encoder (BERT; Devlin et al. 2018, arXiv:1810.04805).

    ``h^L = Encoder(E[x] + P)``; masked-LM head ``p(x_i | x_masked) = softmax(W_e LN(act(W h_i)))``
    (output tied to the embedding); classification head ``softmax(W_c pool(h^L))`` with mean
    pooling over real tokens (there is no [CLS] token in character windows).

    Args:
        vocab_size: V. ``num_classes``: build the classification head (else the masked-LM head).
        block_size: the longest input. Other arguments as :class:`GPT`.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        block_size: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        dim: int = 128,
        ffn_mult: int = 4,
        dropout: float = 0.1,
        positional: str = "learned",
        score: str = "scaled_dot",
        window: Optional[int] = None,
        norm_first: bool = True,
        activation: str = "gelu",
        bias: bool = True,
        num_classes: Optional[int] = None,
    ) -> None:
        super().__init__()
        _check_int("vocab_size", vocab_size, minimum=2)
        _check_int("block_size", block_size)
        _check_int("num_layers", num_layers)
        _check_int("ffn_mult", ffn_mult)
        if num_classes is not None:
            _check_int("num_classes", num_classes, minimum=2)
        _check_common(dim=dim, num_heads=num_heads, dropout=dropout, positional=positional, score=score,
                      window=window, activation=activation)
        self.config = {
            "model": "bert", "vocab_size": vocab_size, "block_size": block_size, "num_layers": num_layers,
            "num_heads": num_heads, "dim": dim, "ffn_mult": ffn_mult, "dropout": dropout,
            "positional": positional, "score": score, "window": window, "norm_first": norm_first,
            "activation": activation, "bias": bias, "num_classes": num_classes,
        }
        self.vocab_size, self.block_size, self.num_classes = vocab_size, block_size, num_classes
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.pos_emb, pos_opts = POSITIONAL[positional](dim, block_size)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.layers = nn.ModuleList(
            TransformerLayer(dim, num_heads=num_heads, ffn_dim=ffn_mult * dim, dropout=dropout,
                             attn_dropout=dropout, norm_first=norm_first, window=window, activation=activation,
                             bias=bias, attention=_attention_options(score, pos_opts, None))
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim, bias=bias) if norm_first else nn.Identity()
        if num_classes is None:
            self.mlm_transform = nn.Sequential(nn.Linear(dim, dim), ACTIVATIONS[activation](), nn.LayerNorm(dim))
            self.mlm_bias = nn.Parameter(torch.zeros(vocab_size))
        else:
            self.classifier = nn.Linear(dim, num_classes)
        _init_gpt_style(self, num_layers)

    @classmethod
    def config_for_task(cls, task: Any, **overrides: Any) -> dict[str, Any]:
        if getattr(task, "kind", None) not in ("mlm", "classify"):
            raise ValueError(f"bert needs a masked-LM or classification task; task {task.name!r} is neither "
                             "(use shakespeare-mlm or shakespeare-genre)")
        defaults = dict(getattr(task, "model_defaults", {}) or {})
        cfg = {"model": "bert", "vocab_size": len(task.vocab), "block_size": getattr(task, "block_size", 128)}
        cfg.update({k: v for k, v in defaults.items() if k in _GPT_KEYS or k == "num_classes"})
        cfg.pop("num_kv_heads", None)
        cfg.pop("tie_weights", None)
        cfg.update(_resolve_overrides(cls, overrides))
        return cfg

    def forward(self, x: Tensor, *, key_mask: Optional[Tensor] = None, need_weights: bool = False) -> EncoderOutput:
        """``x`` (B, L) ids; ``key_mask`` (B, L) True at real tokens (default: ids != PAD)."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.dtype != torch.long:
            got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"x must be a (B, L) long tensor of token ids, got {got}")
        if x.shape[1] > self.block_size:
            raise ValueError(f"input of {x.shape[1]} tokens exceeds block_size={self.block_size}; cut it into windows")
        if key_mask is None and bool((x == PAD).any()):
            key_mask = x != PAD  # (B, L)
        h = self.tok_emb(x)  # (B, L, D)
        if self.pos_emb is not None:
            h = self.pos_emb(h)
        h = self.drop(h)
        weights: list[Tensor] = []
        for layer in self.layers:
            h, w, _ = layer(h, key_mask=key_mask, need_weights=need_weights)
            if need_weights:
                weights.append(w)
        h = self.norm(h)  # (B, L, D)
        if self.num_classes is None:
            logits = F.linear(self.mlm_transform(h), self.tok_emb.weight, self.mlm_bias)  # (B, L, V)
        else:
            if key_mask is None:
                pooled = h.mean(1)  # (B, D)
            else:
                m = key_mask.unsqueeze(-1).to(h.dtype)  # (B, L, 1)
                pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, D)
            logits = self.classifier(pooled)  # (B, C)
        return EncoderOutput(logits, h, weights if need_weights else None)

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Classification cross-entropy on ``batch.label``, else masked-LM cross-entropy on ``batch.target_mask``."""
        logits = self(batch.x).logits
        if self.num_classes is not None:
            if getattr(batch, "label", None) is None:
                raise ValueError("this BERT has a classification head; train it on a task with labels "
                                 "(e.g. shakespeare-genre) or build it without num_classes")
            return _cross_entropy_metrics(logits, batch.label, accuracy=not self.training)
        if getattr(batch, "target_mask", None) is None:
            raise ValueError("this BERT has a masked-LM head; train it on a masked task (shakespeare-mlm) or "
                             "build it with num_classes for a classification task")
        targets = batch.y.masked_fill(~batch.target_mask, -100)  # (B, L): loss on masked positions only
        return _cross_entropy_metrics(logits, targets, accuracy=not self.training)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """Encoder-only models do not generate: they see the whole input at once."""
        raise ValueError(
            "bert is an encoder-only model (bidirectional, no causal decoder), so it cannot generate text; "
            "use `attnkit predict RUN_DIR` to fill in masked characters or classify, or train a decoder "
            "with `attnkit train shakespeare --model gpt` and generate from that"
        )

    @torch.no_grad()
    def attention_maps(self, x: Tensor) -> list[Tensor]:
        was = self.training
        self.eval()
        try:
            return self(x, need_weights=True).weights or []
        finally:
            self.train(was)


# ----------------------------------------------------------------------------------------------
# encoder-decoder
# ----------------------------------------------------------------------------------------------
class Seq2SeqOutput(NamedTuple):
    logits: Tensor  # (B, T, V_tgt)
    encoder_weights: Optional[list[Tensor]] = None  # per layer (B, H, S, S)
    self_weights: Optional[list[Tensor]] = None  # per layer (B, H, T, T)
    cross_weights: Optional[list[Tensor]] = None  # per layer (B, H, T, S)


#: per-task sizes of the encoder-decoder (small: these tasks are short strings on a 2-core CPU);
#: no dropout on the generated tasks with tens of thousands of examples and a time budget (dates, copy ...)
SEQ2SEQ_DEFAULTS: dict[str, dict[str, Any]] = {
    "numbers": {"dim": 64, "num_heads": 4, "encoder_layers": 2, "decoder_layers": 2, "dropout": 0.1},
    "dates": {"dim": 64, "num_heads": 4, "encoder_layers": 2, "decoder_layers": 2, "dropout": 0.0},
    "g2p": {"dim": 128, "num_heads": 4, "encoder_layers": 3, "decoder_layers": 3, "dropout": 0.1},
    "copy": {"dim": 64, "num_heads": 4, "encoder_layers": 2, "decoder_layers": 2, "dropout": 0.0},
    "reverse": {"dim": 64, "num_heads": 4, "encoder_layers": 2, "decoder_layers": 2, "dropout": 0.0},
    "sort": {"dim": 64, "num_heads": 4, "encoder_layers": 2, "decoder_layers": 2, "dropout": 0.0},
}


@register_model("transformer", "encoder-decoder")
class Transformer(nn.Module):
    """The encoder-decoder Transformer (Vaswani et al. 2017, arXiv:1706.03762).

    ``p(y_t | y_<t, x) = softmax(W_o Dec(E_y[y_<t] √D + P, Enc(E_x[x] √D + P)))``.

    Args:
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

    def __init__(
        self,
        src_vocab_size: int,
        *,
        tgt_vocab_size: int,
        dim: int = 128,
        num_heads: int = 4,
        encoder_layers: int = 3,
        decoder_layers: int = 3,
        ffn_mult: int = 4,
        dropout: float = 0.1,
        norm_first: bool = True,
        positional: str = "sinusoidal",
        max_len: int = 512,
        score: str = "scaled_dot",
        window: Optional[int] = None,
        activation: str = "relu",
        label_smoothing: float = 0.0,
        share_embeddings: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        _check_int("src_vocab_size", src_vocab_size, minimum=3)
        _check_int("tgt_vocab_size", tgt_vocab_size, minimum=3)
        _check_int("encoder_layers", encoder_layers)
        _check_int("decoder_layers", decoder_layers)
        _check_int("ffn_mult", ffn_mult)
        _check_int("max_len", max_len)
        _check_common(dim=dim, num_heads=num_heads, dropout=dropout, positional=positional, score=score,
                      window=window, activation=activation)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError(
                f"share_embeddings needs one vocabulary; got src_vocab_size={src_vocab_size} and "
                f"tgt_vocab_size={tgt_vocab_size} (pass share_embeddings=False)"
            )
        self.config = {
            "model": "transformer", "src_vocab_size": src_vocab_size, "tgt_vocab_size": tgt_vocab_size,
            "dim": dim, "num_heads": num_heads, "encoder_layers": encoder_layers,
            "decoder_layers": decoder_layers, "ffn_mult": ffn_mult, "dropout": dropout, "norm_first": norm_first,
            "positional": positional, "max_len": max_len, "score": score, "window": window,
            "activation": activation, "label_smoothing": label_smoothing, "share_embeddings": share_embeddings,
            "bias": bias,
        }
        self.dim, self.max_len, self.label_smoothing = dim, max_len, label_smoothing
        # shared embeddings and the tied output layer read tgt_emb.weight: no tensor appears twice in the state_dict
        self.tgt_emb = nn.Embedding(tgt_vocab_size, dim, padding_idx=PAD)
        self.src_emb = None if share_embeddings else nn.Embedding(src_vocab_size, dim, padding_idx=PAD)
        self.src_pos, pos_opts = POSITIONAL[positional](dim, max_len)
        self.tgt_pos, _ = POSITIONAL[positional](dim, max_len)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        attn = _attention_options(score, pos_opts, None)
        common = dict(num_heads=num_heads, ffn_dim=ffn_mult * dim, dropout=dropout, attn_dropout=dropout,
                      norm_first=norm_first, activation=activation, bias=bias, window=window)
        self.encoder = nn.ModuleList(TransformerLayer(dim, attention=attn, **common) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(
            TransformerLayer(dim, attention=attn, cross_attention=True, cross_options={"score": score}, **common)
            for _ in range(decoder_layers)
        )
        self.enc_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()
        self.dec_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()
        self.tgt_vocab_size = tgt_vocab_size
        for emb in (self.src_emb, self.tgt_emb):
            if emb is not None:
                nn.init.normal_(emb.weight, std=dim**-0.5)
                with torch.no_grad():
                    emb.weight[PAD].zero_()

    @classmethod
    def config_for_task(cls, task: Any, **overrides: Any) -> dict[str, Any]:
        """Sized for a sequence-to-sequence task: its two vocabularies (the rest: our defaults)."""
        if not hasattr(task, "src_vocab") or hasattr(task, "encode_prompt"):
            raise ValueError(f"transformer is an encoder-decoder for translation tasks; for {task.name!r} use "
                             f"--model {getattr(task, 'default_model', 'gpt')}")
        cfg = {"model": "transformer", "src_vocab_size": len(task.src_vocab), "tgt_vocab_size": len(task.tgt_vocab)}
        cfg.update(SEQ2SEQ_DEFAULTS.get(task.name, {}))
        cfg.update(_resolve_overrides(cls, overrides))
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

    def encode(self, src: Tensor, src_lengths: Tensor, *, need_weights: bool = False) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Memory (B, S, D), its key mask (B, S) and the encoder self-attention weights."""
        if src.dim() != 2 or src.dtype != torch.long:
            raise TypeError(f"src must be a (B, S) long tensor, got {src.dtype} {tuple(src.shape)}")
        S = src.shape[1]
        src_mask = torch.arange(S, device=src.device)[None, :] < src_lengths.to(src.device)[:, None]  # (B, S)
        h = self._embed(src, self.tgt_emb if self.src_emb is None else self.src_emb, self.src_pos)
        weights = []
        for layer in self.encoder:
            h, w, _ = layer(h, key_mask=src_mask, need_weights=need_weights)
            weights.append(w)
        return self.enc_norm(h), src_mask, weights

    def decode(self, tgt_in: Tensor, memory: Tensor, memory_mask: Tensor, *, caches: Optional[list] = None,
               need_weights: bool | str = False) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Logits (B, T, V) for ``tgt_in`` (B, T); with ``caches`` it continues the cached positions.

        ``need_weights``: True for every layer's weights, "last" for the last layer's only.
        """
        offset = caches[0][0].length if caches else 0
        h = self._embed(tgt_in, self.tgt_emb, self.tgt_pos, offset)
        self_ws, cross_ws = [], []
        last = len(self.decoder) - 1
        for i, layer in enumerate(self.decoder):
            sc, cc = caches[i] if caches else (None, None)
            want = need_weights is True or (need_weights == "last" and i == last)
            h, sw, cw = layer(h, causal=True, cache=sc, memory=memory, memory_mask=memory_mask, cross_cache=cc,
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
        return _cross_entropy_metrics(logits, batch.tgt_out, ignore_index=PAD, label_smoothing=self.label_smoothing,
                                      accuracy=not self.training)

    def _new_caches(self, memory: Tensor, capacity: int) -> list[tuple[KVCache, KVCache]]:
        B = memory.shape[0]
        return [(layer.self_attn.new_cache(B, capacity), layer.cross_attn.new_cache(B, memory.shape[1], static=True))
                for layer in self.decoder]

    @torch.no_grad()
    def generate(self, src: Tensor, src_lengths: Tensor, *, max_len: int, beam_size: int = 1,
                 length_penalty: float = 1.0) -> list[tuple[list[int], Tensor]]:
        """Decode each source: (tokens without BOS/EOS, alignment (T, S_b)) per row.

        The alignment is the last decoder layer's cross-attention averaged over heads. Greedy for
        ``beam_size=1``; beam search ranks finished hypotheses by log p / length^length_penalty.
        """
        _check_int("max_len", max_len)
        _check_int("beam_size", beam_size)
        was = self.training
        self.eval()
        try:
            memory, mask, _ = self.encode(src, src_lengths)
            if beam_size == 1:
                return self._greedy(memory, mask, src_lengths, max_len)
            return [self._beam(memory[b : b + 1], mask[b : b + 1], int(src_lengths[b]), max_len, beam_size,
                               length_penalty) for b in range(src.shape[0])]
        finally:
            self.train(was)

    def _step(self, ids: Tensor, memory: Tensor, mask: Tensor, caches: list) -> tuple[Tensor, Tensor]:
        logits, _, cross = self.decode(ids, memory, mask, caches=caches, need_weights="last")
        logits = logits[:, -1].index_fill(-1, torch.tensor([PAD, BOS], device=logits.device), float("-inf"))
        return logits.log_softmax(-1), cross[-1][:, :, -1].mean(1)  # (B, V) never PAD/BOS, (B, S)

    def _greedy(self, memory: Tensor, mask: Tensor, src_lengths: Tensor, max_len: int) -> list[tuple[list[int], Tensor]]:
        B, S, _ = memory.shape
        caches = self._new_caches(memory, max_len + 1)
        ids = torch.full((B, 1), BOS, dtype=torch.long, device=memory.device)
        out = torch.zeros(B, 0, dtype=torch.long, device=memory.device)
        aligns = []
        done = torch.zeros(B, dtype=torch.bool, device=memory.device)
        for _ in range(max_len):
            logp, align = self._step(ids, memory, mask, caches)
            nxt = logp.argmax(-1)  # (B,)
            out = torch.cat([out, nxt[:, None]], 1)
            aligns.append(align)
            done |= nxt == EOS
            ids = nxt[:, None]
            if bool(done.all()):
                break
        A = torch.stack(aligns, 1)  # (B, T, S)
        res = []
        for b in range(B):
            toks = out[b].tolist()
            n = toks.index(EOS) if EOS in toks else len(toks)
            res.append((toks[:n], A[b, :n, : int(src_lengths[b])].cpu()))
        return res

    def _beam(self, memory: Tensor, mask: Tensor, src_len: int, max_len: int, K: int,
              length_penalty: float) -> tuple[list[int], Tensor]:
        """Beam search for one source (memory (1, S, D))."""
        V = self.tgt_vocab_size
        mem = memory.expand(K, -1, -1)  # (K, S, D)
        msk = mask.expand(K, -1)  # (K, S)
        caches = self._new_caches(mem, max_len + 1)
        ids = torch.full((K, 1), BOS, dtype=torch.long, device=memory.device)
        scores = torch.full((K,), float("-inf"), device=memory.device)
        scores[0] = 0.0  # all beams start identical: expand only the first
        hist = torch.zeros(K, 0, dtype=torch.long, device=memory.device)
        align = torch.zeros(K, 0, memory.shape[1], device=memory.device)
        finished: list[tuple[float, list[int], Tensor]] = []
        for t in range(max_len):
            logp, a = self._step(ids, mem, msk, caches)  # (K, V), (K, S)
            cand = (scores[:, None] + logp).view(-1)  # (K*V,)
            top, flat = cand.topk(2 * K)
            beam, tok = flat // V, flat % V
            keep_b, keep_t, keep_s = [], [], []
            for s, b, w in zip(top.tolist(), beam.tolist(), tok.tolist()):
                if s == float("-inf"):
                    break
                if w == EOS:
                    seq = hist[b].tolist()
                    finished.append((s / max(len(seq) + 1, 1) ** length_penalty, seq,
                                     torch.cat([align[b], a[b : b + 1]], 0)[: len(seq)]))
                else:
                    keep_b.append(b)
                    keep_t.append(w)
                    keep_s.append(s)
                if len(keep_b) == K:
                    break
            best_done = max((f[0] for f in finished), default=float("-inf"))
            if not keep_b or len(finished) >= K and best_done >= max(keep_s) / max(t + 1, 1) ** length_penalty:
                break
            while len(keep_b) < K:  # pad with dead beams
                keep_b.append(keep_b[0])
                keep_t.append(keep_t[0])
                keep_s.append(float("-inf"))
            index = torch.tensor(keep_b, device=memory.device)
            for sc, _ in caches:
                sc.reorder(index)
            hist = torch.cat([hist[index], torch.tensor(keep_t, device=memory.device)[:, None]], 1)
            align = torch.cat([align[index], a[index][:, None]], 1)
            scores = torch.tensor(keep_s, device=memory.device)
            ids = hist[:, -1:]
        if not finished:  # nothing ended with EOS within max_len: take the best live beam
            finished.append((float(scores[0]), hist[0].tolist(), align[0]))
        _, seq, al = max(finished, key=lambda f: f[0])
        return seq, al[:, :src_len].cpu()
