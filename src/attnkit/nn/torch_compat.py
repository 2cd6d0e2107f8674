"""A drop-in for ``torch.nn.MultiheadAttention`` (Vaswani et al. 2017, arXiv:1706.03762)
that runs on :func:`attnkit.functional.attention`: :class:`TorchMultiheadAttention`,
also importable as ``MultiheadAttention`` (an alias of the same class, torch's
spelling, so ``from attnkit.nn import MultiheadAttention`` replaces
``from torch.nn import MultiheadAttention``). attnkit's own layer, batch-first
with GQA, RoPE/ALiBi and a KV cache, is :class:`attnkit.nn.MultiHeadAttention`.

``MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,  head_i = softmax(Q W_i^Q (K W_i^K)ᵀ / sqrt(d) + M) V W_i^V``

Same constructor (``embed_dim, num_heads, dropout, bias, add_bias_kv,
add_zero_attn, kdim, vdim, batch_first, device, dtype``), same parameter
names (it loads a torch ``MultiheadAttention`` state_dict unchanged), same
``forward(query, key, value, key_padding_mask=None, need_weights=True,
attn_mask=None, average_attn_weights=True, is_causal=False)`` and torch's mask
conventions, converted here at the boundary and nowhere else (DESIGN.md):

* ``key_padding_mask`` (N, S): bool True = IGNORE that key, or float added.
* ``attn_mask`` (L, S) or (N·num_heads, L, S): bool True = NOT allowed, or float added.

Differences, on purpose:

* A query row with no allowed key (in some head) gets, in that head, the
  attention context 0 and weights 0, so its output is what ``out_proj`` makes
  of 0: ``out_proj.bias`` where every head is empty (attnkit's rule for every
  module, :mod:`attnkit.nn.base`). torch 2.13 gives the same where it runs
  ``scaled_dot_product_attention`` (``need_weights=False``), NaN output and
  weights with ``need_weights=True``, and NaN output on its fused inference
  paths (eval + no_grad self-attention with a bool mask; the fused
  ``TransformerEncoderLayer``).
* In training with ``dropout > 0`` the returned weights are those before
  dropout (attnkit's contract); torch returns the dropped ones.
* ``is_causal=True`` without ``attn_mask`` applies the causal mask (torch
  raises); with ``attn_mask`` the mask is used as given, as torch does.
  (torch itself, for ``is_causal=True`` without ``key_padding_mask`` and
  ``need_weights=False``, drops ``attn_mask`` and runs SDPA's ``is_causal``
  over the keys including ``bias_k`` / the zero key, which its own
  need_weights=True path allows; attnkit always follows the mask.)

Inside torch's own layers (``torch.nn.TransformerEncoderLayer``,
``TransformerDecoderLayer``, ``TransformerEncoder``, ``Transformer``) set as
``self_attn`` / ``multihead_attn``, it runs in training and in inference.
torch's encoder layer has a fused inference fast path
(``torch._transformer_encoder_layer_fwd``: eval, no gradients needed,
batch_first, even num_heads, ...) that reads ``self_attn``'s weights and never
calls its ``forward``; ``TransformerEncoder`` also turns a padded batch into a
NestedTensor there. Both are decided on ``self_attn._qkv_same_embed_dim``,
which this class sets False, so torch keeps to the layer's ordinary path and
this forward runs (torch then warns once, when a ``TransformerEncoder`` is
built around such a layer, that ``enable_nested_tensor`` is off). An encoder
built with torch's attention and given this one afterwards still converts
padded batches to NestedTensors; forward takes those (self-attention) and
returns one. :meth:`merge_masks` is torch's, for code that calls it.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..core import masks as fmasks
from ..core.masks import mask_index
from ._common import attend, check_dim, check_dropout, shape_str

__all__ = ["TorchMultiheadAttention", "MultiheadAttention"]

#: bytes of the (N, H, rows, S) weights one row block of the head-averaged path holds (fits in L2).
MEAN_WEIGHTS_BLOCK_BYTES = 8 << 20


def _mean_weights_by_rows(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Output (N, H, L, Dh) and weights averaged over heads (N, L, S) without the (N, H, L, S) tensor.

    Row block by row block, ``W = softmax(q kᵀ / sqrt(d) + M)`` of every head is formed
    (the sdpa backend's one-pass weights path), used for ``W v`` and averaged over heads
    while it is still in cache; only the (N, L, S) average is written out. Blocks hold
    about MEAN_WEIGHTS_BLOCK_BYTES (timings: ``attnkit bench --suite mha``).
    """
    N, H, L, _ = q.shape
    S = k.shape[2]
    rows = max(1, MEAN_WEIGHTS_BLOCK_BYTES // max(1, N * H * S * q.element_size()))
    k, v = k.contiguous(), v.contiguous()  # once, not one copy per block inside matmul
    outs, means = [], []
    for r0 in range(0, L, rows):
        r1 = min(L, r0 + rows)
        m = None if mask is None else mask[mask_index(mask, r0, r1, 0, S)]  # (.., r1 - r0 or 1, S)
        o, w = attend(q[:, :, r0:r1], k, v, mask=m, return_weights=True)  # (N, H, r, Dh), (N, H, r, S)
        outs.append(o)
        means.append(w.mean(dim=1))  # (N, r, S)
    if len(outs) == 1:
        return outs[0], means[0]
    return torch.cat(outs, dim=2), torch.cat(means, dim=1)  # (N, H, L, Dh), (N, L, S)


class TorchMultiheadAttention(nn.Module):
    """``torch.nn.MultiheadAttention`` with the same arguments, state_dict and masks.

    Masks follow torch: ``key_padding_mask`` (N, S) bool True = padding (ignored),
    ``attn_mask`` bool True = NOT allowed; float masks are added to the scores.
    (attnkit's own modules take the opposite, ``key_allowed`` True = may attend.)

    Args:
        embed_dim: E, the query and output size.
        num_heads: heads; must divide embed_dim.
        dropout: dropout on the attention weights (training only).
        bias: biases on the input and output projections.
        add_bias_kv: append a learned key and value (``bias_k``, ``bias_v``).
        add_zero_attn: append a zero key and value after the projections.
        kdim: key input size (default embed_dim).
        vdim: value input size (default embed_dim).
        batch_first: inputs (N, L, E) instead of (L, N, E).

    Example::

        >>> ref = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        >>> ours = TorchMultiheadAttention(8, 2, batch_first=True)
        >>> ours.load_state_dict(ref.state_dict())
        <All keys matched successfully>
    """

    #: torch's TransformerEncoderLayer / TransformerEncoder take their fused inference path
    #: (which bypasses forward) only when ``self_attn._qkv_same_embed_dim`` is True; False keeps
    #: them calling forward. The parameter layout is ``_packed_in_proj``.
    _qkv_same_embed_dim = False

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: Optional[int] = None,
        vdim: Optional[int] = None,
        batch_first: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_dim(embed_dim, "embed_dim")
        check_dim(num_heads, "num_heads")
        check_dim(kdim, "kdim", allow_none=True)
        check_dim(vdim, "vdim", allow_none=True)
        if embed_dim % num_heads:
            raise ValueError(
                f"num_heads={num_heads} does not divide embed_dim={embed_dim}; pick num_heads among its divisors"
            )
        fk = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._packed_in_proj = self.kdim == embed_dim and self.vdim == embed_dim  # one (3E, E) in_proj_weight
        self.num_heads = num_heads
        self.dropout = check_dropout(dropout)
        self.batch_first = bool(batch_first)
        self.head_dim = embed_dim // num_heads
        self.add_zero_attn = bool(add_zero_attn)
        if self._packed_in_proj:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim, **fk))  # (3E, E)
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = nn.Parameter(torch.empty(embed_dim, embed_dim, **fk))
            self.k_proj_weight = nn.Parameter(torch.empty(embed_dim, self.kdim, **fk))
            self.v_proj_weight = nn.Parameter(torch.empty(embed_dim, self.vdim, **fk))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim, **fk))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **fk)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, embed_dim, **fk))
            self.bias_v = nn.Parameter(torch.empty(1, 1, embed_dim, **fk))
        else:
            self.bias_k = self.bias_v = None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        if self._packed_in_proj:
            nn.init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                nn.init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)
        if self.bias_k is not None:
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)

    def _weights(self) -> tuple[Tensor, Tensor, Tensor]:
        if self._packed_in_proj:
            return self.in_proj_weight.chunk(3)  # 3 x (E, E)
        return self.q_proj_weight, self.k_proj_weight, self.v_proj_weight

    def _biases(self) -> tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
        if self.in_proj_bias is None:
            return None, None, None
        return self.in_proj_bias.chunk(3)

    def _key_padding(self, kpm: Tensor, N: int, S: int) -> Tensor:
        if not isinstance(kpm, Tensor) or not (kpm.dtype == torch.bool or kpm.is_floating_point()):
            raise TypeError(
                "key_padding_mask must be a bool (True = ignore) or float tensor, "
                f"got {getattr(kpm, 'dtype', type(kpm))}"
            )
        if kpm.shape != (N, S):
            raise ValueError(f"key_padding_mask has shape {shape_str(kpm)}; expected (N, S) = ({N}, {S})")
        m = ~kpm if kpm.dtype == torch.bool else kpm  # our polarity: True = attend
        return m[:, None, None, :]  # (N, 1, 1, S)

    def _attn_mask(self, am: Tensor, N: int, L: int, S: int) -> Tensor:
        if not isinstance(am, Tensor) or not (am.dtype == torch.bool or am.is_floating_point()):
            raise TypeError(
                f"attn_mask must be a bool (True = not allowed) or float tensor, got {getattr(am, 'dtype', type(am))}"
            )
        H = self.num_heads
        if am.dim() == 2:
            if am.shape != (L, S):
                raise ValueError(f"attn_mask has shape {shape_str(am)}; a 2-D attn_mask must be (L, S) = ({L}, {S})")
            m = am[None, None]  # (1, 1, L, S)
        elif am.dim() == 3:
            if am.shape != (N * H, L, S):
                raise ValueError(
                    f"attn_mask has shape {shape_str(am)}; a 3-D attn_mask must be (N * num_heads, L, S) = "
                    f"({N * H}, {L}, {S}), heads varying fastest; or pass a 2-D (L, S) mask shared by all"
                )
            m = am.view(N, H, L, S)  # (N, H, L, S)
        else:
            raise ValueError(f"attn_mask has shape {shape_str(am)}; expected (L, S) or (N * num_heads, L, S)")
        return ~m if m.dtype == torch.bool else m

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Optional[Tensor] = None,
        need_weights: bool = True,
        attn_mask: Optional[Tensor] = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """Returns ``(attn_output, attn_weights)`` exactly as torch does: output
        (N, L, E) with batch_first else (L, N, E); weights (N, L, S) averaged
        over heads or (N, H, L, S), None unless ``need_weights``."""
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if query.is_nested:
            return self._nested_self_attention(query, key, value, key_padding_mask, need_weights, attn_mask, is_causal)
        unbatched = query.dim() == 2
        if unbatched:
            if key.dim() != 2 or value.dim() != 2:
                raise ValueError("unbatched query (L, E) needs unbatched key (S, kdim) and value (S, vdim)")
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)  # (1, N, E)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)  # (1, S)
            # a 3-D attn_mask (num_heads, L, S) is already (N * num_heads, L, S) with N = 1
        elif not self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))  # (N, L, E)
        elif query.dim() != 3:
            raise ValueError(f"query has shape {shape_str(query)}; expected (N, L, E) or unbatched (L, E)")
        N, L, E = query.shape
        if E != self.embed_dim:
            raise ValueError(f"query has {E} features but embed_dim={self.embed_dim}")
        if key.dim() != 3 or key.shape[-1] != self.kdim or value.dim() != 3 or value.shape[-1] != self.vdim:
            raise ValueError(
                f"key {shape_str(key)} / value {shape_str(value)} must have kdim={self.kdim} / vdim={self.vdim} "
                "features"
            )
        if key.shape[0] != N or value.shape[:2] != key.shape[:2]:
            raise ValueError(
                f"key {shape_str(key)} and value {shape_str(value)} must match the query batch {N} and each other"
            )
        S = key.shape[1]
        H, Dh = self.num_heads, self.head_dim

        wq, wk, wv = self._weights()
        bq, bk, bv = self._biases()
        q = F.linear(query, wq, bq).view(N, L, H, Dh).transpose(1, 2)  # (N, H, L, Dh)
        k = F.linear(key, wk, bk)  # (N, S, E)
        v = F.linear(value, wv, bv)  # (N, S, E)

        mask = None
        if key_padding_mask is not None:
            mask = self._key_padding(key_padding_mask, N, S)
        if attn_mask is not None:
            mask = fmasks.combine(mask, self._attn_mask(attn_mask, N, L, S))
        elif is_causal:
            mask = fmasks.combine(mask, fmasks.causal_mask(L, S, device=query.device)[None, None])  # (1, 1, L, S)

        def pad_allowed(m: Optional[Tensor]) -> Optional[Tensor]:
            if m is None:
                return None
            col = torch.ones if m.dtype == torch.bool else torch.zeros
            extra = col(*m.shape[:-1], 1, dtype=m.dtype, device=m.device)
            return torch.cat([m, extra], dim=-1)  # (.., S + 1): the appended key is allowed

        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(N, 1, E)], dim=1)  # (N, S + 1, E)
            v = torch.cat([v, self.bias_v.expand(N, 1, E)], dim=1)
            mask = pad_allowed(mask)
        k = k.view(N, -1, H, Dh).transpose(1, 2)  # (N, H, S', Dh)
        v = v.view(N, -1, H, Dh).transpose(1, 2)  # (N, H, S', Dh)
        if self.add_zero_attn:
            z = torch.zeros(N, H, 1, Dh, dtype=k.dtype, device=k.device)
            k, v = torch.cat([k, z], dim=2), torch.cat([v, z], dim=2)  # (N, H, S' + 1, Dh)
            mask = pad_allowed(mask)
        if mask is not None:
            mask = mask.to(q.dtype) if mask.is_floating_point() else mask

        dropout_p = self.dropout if self.training else 0.0
        if need_weights and average_attn_weights and dropout_p == 0.0:
            out, w = _mean_weights_by_rows(q, k, v, mask)  # (N, H, L, Dh), (N, L, S')
            average_attn_weights = False  # already averaged
        else:
            res = attend(q, k, v, mask=mask, dropout_p=dropout_p, return_weights=need_weights)
            out, w = (res if need_weights else (res, None))
        out = out.transpose(1, 2).reshape(N, L, E)  # (N, L, E)
        out = self.out_proj(out)  # a query with no allowed key: out_proj(0)
        if w is not None and average_attn_weights:
            w = w.mean(dim=1)  # (N, L, S')
        if unbatched:
            out = out.squeeze(0)  # (L, E)
            w = w.squeeze(0) if w is not None else None
        elif not self.batch_first:
            out = out.transpose(0, 1)  # (L, N, E)
        return out, w

    def _nested_self_attention(
        self, x: Tensor, key: Tensor, value: Tensor, key_padding_mask: Optional[Tensor], need_weights: bool,
        attn_mask: Optional[Tensor], is_causal: bool,
    ) -> tuple[Tensor, None]:
        """Self-attention over a NestedTensor (N, *, E), what ``torch.nn.TransformerEncoder``
        passes its layers on its fast path: padded, attended with the padding masked, nested again."""
        if key is not x or value is not x or key_padding_mask is not None or attn_mask is not None or need_weights \
                or is_causal:
            raise ValueError(
                "a NestedTensor query is taken for self-attention only (key and value the same tensor, no masks, "
                "is_causal=False, need_weights=False); pass padded (N, L, E) tensors with a key_padding_mask instead"
            )
        parts = x.unbind()  # N x (L_i, E)
        lengths = torch.tensor([t.shape[0] for t in parts], device=parts[0].device)  # (N,)
        padded = x.to_padded_tensor(0.0)  # (N, L, E)
        pad = torch.arange(padded.shape[1], device=padded.device)[None, :] >= lengths[:, None]  # (N, L) True = padding
        if not self.batch_first:
            padded = padded.transpose(0, 1)  # (L, N, E)
        out, _ = self.forward(padded, padded, padded, key_padding_mask=pad, need_weights=False)
        if not self.batch_first:
            out = out.transpose(0, 1)  # (N, L, E)
        return torch.nested.as_nested_tensor([out[i, : t.shape[0]] for i, t in enumerate(parts)]), None

    def merge_masks(
        self, attn_mask: Optional[Tensor], key_padding_mask: Optional[Tensor], query: Tensor
    ) -> tuple[Optional[Tensor], Optional[int]]:
        """``torch.nn.MultiheadAttention.merge_masks``: the one mask torch's fused kernels take and its type.

        ``key_padding_mask`` (N, S) alone -> (it, 1); ``attn_mask`` (L, L) or (N·H, L, L) -> expanded
        to (N, H, L, L), type 2, added to the expanded ``key_padding_mask`` when both are given (torch's
        masks: True / -inf = not allowed); neither -> (None, None). query (N, L, E).
        """
        mask_type: Optional[int] = None
        merged: Optional[Tensor] = None
        if key_padding_mask is not None:
            mask_type, merged = 1, key_padding_mask
        if attn_mask is not None:
            N, L, _ = query.shape
            mask_type = 2
            if attn_mask.dim() == 3:
                merged = attn_mask.view(N, -1, L, L)  # (N, H, L, L)
            else:
                merged = attn_mask.view(1, 1, L, L).expand(N, self.num_heads, -1, -1)  # (N, H, L, L)
            if key_padding_mask is not None:
                merged = merged + key_padding_mask.view(N, 1, 1, L).expand(-1, self.num_heads, -1, -1)
        return merged, mask_type

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, kdim={self.kdim}, vdim={self.vdim}, "
            f"batch_first={self.batch_first}, add_bias_kv={self.bias_k is not None}, add_zero_attn={self.add_zero_attn}"
        )


#: torch's spelling of :class:`TorchMultiheadAttention` (the same class), for drop-in imports
MultiheadAttention = TorchMultiheadAttention
