"""The ``sdpa`` backend: every score that is a dot product in disguise, on torch SDPA.

Vaswani et al. 2017 (arXiv:1706.03762) scaled dot-product attention, run by
``torch.nn.functional.scaled_dot_product_attention`` (its CPU flash kernel, or
flash / memory-efficient / cuDNN on GPU, after Dao et al. 2022, arXiv:2205.14135):
``output = softmax(scale · qp kpᵀ + bias) v`` with ``(qp, kp) = score.project(q, k)``.

Lowering, score by score (``Score.lowers_to_dot``):

* dot, scaled_dot: ``qp, kp = q, k``; scale 1 or 1/sqrt(E).
* general: ``qp = q W`` then a dot with k.
* cosine: ``qp = β q/|q|``, ``kp = k/|k|``.
* location: ``kp`` = the rows of W_a, so ``qp · kp_s = (W_a q)_s``.

Masks: a bool mask (True = attend) or a float bias goes in ``attn_mask``
(windows, Luong local-p's Gaussian log-bias, ALiBi are all such masks);
top-left causal without a mask is SDPA's ``is_causal``; bottom-right causal (or
causal with a mask) becomes one combined mask. Grouped-query attention uses
``enable_gqa``. Dropout draws from ``generator`` when one is given (SDPA itself
reads the global RNG, so we seed a forked RNG from it).

Fully masked rows: the contract is output 0, weights 0, finite zero gradients.
SDPA returns NaN for them on some kernels, so when the mask leaves a row with
no allowed key we let that row attend everywhere (no NaN can arise) and zero
its output afterwards; the zeroed output sends zero gradients back.

NaN in, NaN out: without a mask, torch's CPU flash kernel returns 0 for a query row
whose scores are all NaN (a NaN in the query row), where every other path returns NaN;
:func:`keep_nan_rows` adds ``0 · clamp(max(q row), -1, 1)`` (0, or NaN for such a row)
to the output so this backend agrees (on CPU only when the query holds a NaN at all).

Refused (with reasons): scores that are not dot products, normalizers other
than softmax, ``score_mod`` / ``mask_mod`` (use the ``chunked`` backend, or pass
the bias as a float mask). ``return_weights=True`` without dropout computes
the (B, H, L, S) weights once, ``softmax(q kᵀ · scale + mask)``, and the output
from them (``W v``): the caller asked for the whole weight tensor, so this one
pass (what ``torch.nn.MultiheadAttention`` does for ``need_weights=True``) costs
less than the fused kernel plus a recomputation. With dropout the output runs
through SDPA and the exact pre-dropout weights are recomputed in row blocks
(:func:`attnkit.backends.weights.materialise_weights`); weights of chosen rows
or heads only come from :func:`attnkit.functional.attention_weights`.

The plainest call, ``attention(q, k, v)`` / ``causal=True`` on 4-D tensors with
every other argument at its default, is what every Transformer layer makes;
:meth:`SDPABackend.takes_plain` tells ``attention()`` when this backend would be
chosen for it without building a spec, and :meth:`SDPABackend.run_plain` runs it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.masks import causal_mask, combine
from ..core.reference import expand_kv
from ..core.scores import Cosine, Dot, General, ScaledDot
from ..core.spec import AttentionResult, AttentionSpec
from .base import Backend, register_backend
from .math import materialised_bytes
from .weights import materialise_weights

__all__ = ["SDPABackend", "sdpa_mask", "project_for_dot", "keep_nan_rows"]

#: scores whose projection of k does not depend on the head, so grouped-query
#: keys can stay un-expanded (location's per-head W_a needs every head).
_KEY_HEAD_FREE = (Dot, ScaledDot, General, Cosine)


def project_for_dot(spec: AttentionSpec) -> tuple[Tensor, Tensor, Tensor, int]:
    """(qp, kp, v, groups) ready for a dot-product kernel; kp/v keep Hk heads when they can."""
    k, v, groups = spec.key, spec.value, spec.groups
    if groups > 1 and not isinstance(spec.score, _KEY_HEAD_FREE):
        k, v, groups = expand_kv(k, groups), expand_kv(v, groups), 1  # (B, H, S, E)
    qp, kp = spec.score.project(spec.query, k)
    dtype = spec.query.dtype
    return qp.to(dtype), kp.to(dtype), v, groups


def sdpa_mask(spec: AttentionSpec) -> tuple[Tensor | None, bool]:
    """(attn_mask, is_causal) for SDPA: the spec's mask and causal flag as one."""
    if spec.causal is None:
        return spec.mask, False
    if spec.causal == "top_left" and spec.mask is None:
        return None, True
    cm = causal_mask(spec.L, spec.S, alignment=spec.causal, device=spec.device)  # (L, S)
    return combine(spec.mask, cm), False


def keep_nan_rows(out: Tensor, qp: Tensor) -> Tensor:
    """``out`` (B, H, L, Ev) with NaN in the rows whose query qp (B, H, L, E) holds a NaN: SDPA
    without a mask returns 0 there on CPU. ``clamp`` keeps an infinite query (whose row SDPA
    handles itself) from turning 0 · inf into NaN. Outside autograd (a constant 0 or NaN per row);
    on CPU one sum of the query first skips the row work when no NaN is present, which is what
    every training step sees."""
    q = qp.detach()
    if q.is_cpu and not bool(torch.isnan(q.sum())):  # NaN anywhere makes the sum NaN
        return out
    return out + q.amax(-1, keepdim=True).clamp(-1, 1) * 0  # (B, H, L, 1): 0, or NaN in a NaN row


def _guard_empty_rows(mask: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """(mask, rows_ok): rows with no allowed key made to attend everywhere, and
    the (.., L, 1) rows that had one (None when every row had one)."""
    if mask is None:
        return None, None
    allowed = mask if mask.dtype == torch.bool else mask > float("-inf")
    rows_ok = allowed.any(-1, keepdim=True)  # (.., L, 1)
    if bool(rows_ok.all()):
        return mask, None
    if mask.dtype == torch.bool:
        return mask | ~rows_ok, rows_ok
    return torch.where(rows_ok, mask, torch.zeros((), dtype=mask.dtype, device=mask.device)), rows_ok


def _with_weights(
    spec: AttentionSpec, qp: Tensor, kp: Tensor, v: Tensor, groups: int,
    mask: Tensor | None, is_causal: bool, rows_ok: Tensor | None,
) -> AttentionResult:
    """Output and weights in one pass: ``W = softmax(q kᵀ · scale + mask)``, ``out = W v``.

    ``mask`` has had its empty rows opened (``_guard_empty_rows``); ``rows_ok``
    (.., L, 1) zeroes their weights (and so their output) afterwards.
    """
    kp, v = expand_kv(kp, groups), expand_kv(v, groups)  # (B, H, S, E), (B, H, S, Ev)
    s = torch.matmul(qp * spec.scale, kp.transpose(-1, -2))  # (B, H, L, S)
    if is_causal:
        s = s.masked_fill(~causal_mask(spec.L, spec.S, device=s.device), float("-inf"))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    w = torch.softmax(s, dim=-1)  # (B, H, L, S)
    if rows_ok is not None:
        w = w.masked_fill(~rows_ok, 0.0)
    return AttentionResult(output=torch.matmul(w, v), weights=w)  # (B, H, L, Ev)


@register_backend
class SDPABackend(Backend):
    name = "sdpa"
    priority = 100
    description = "torch scaled_dot_product_attention for every score that lowers to a dot product"
    notes = (
        "memory O(B·H·(L+S)·E) on the flash kernels (O(B·H·L·S) when torch picks its math kernel: "
        "dropout on CPU, E != Ev); weights recomputed on request"
    )
    supports_score_mod = False
    supports_mask_mod = False
    softmax_only = True
    dot_scores_only = True

    @classmethod
    def takes_plain(cls, query: Any, key: Any, value: Any, causal: Any) -> bool:
        """Whether dispatch would pick this backend for the plain call ``attention(query, key, value,
        causal=causal)`` (every other argument at its default, no ``restrict_backends`` in force):
        4-D tensors (B, H, L, E), (B, H, S, E), (B, H, S, Ev), non-empty, of one of ``dtypes`` and
        on one of ``devices``, no grouped-query heads, top-left or no causal. No mask means no
        row can be empty; the memory estimate is not consulted (linear in L without a mask)."""
        if (
            type(query) is not Tensor or type(key) is not Tensor or type(value) is not Tensor
            or query.dim() != 4 or key.dim() != 4 or value.dim() != 4
            or causal not in (False, True, "top_left")
            or query.dtype not in cls.dtypes or not cls.runs_on(query)
        ):
            return False
        B, H, L, E = query.shape
        return not (
            key.dtype != query.dtype or value.dtype != query.dtype
            or key.device != query.device or value.device != query.device
            or key.shape[:2] != (B, H) or key.shape[-1] != E or value.shape[:3] != key.shape[:3]
            or H == 0 or L == 0 or key.shape[2] == 0 or E == 0
        )

    @staticmethod
    def run_plain(query: Tensor, key: Tensor, value: Tensor, causal: bool | str) -> Tensor:
        """The output (B, H, L, Ev) of a call :meth:`takes_plain` accepted: what :meth:`forward` computes."""
        return keep_nan_rows(F.scaled_dot_product_attention(query, key, value, is_causal=bool(causal)), query)

    def memory_bytes(self, spec: AttentionSpec) -> int:
        item = max(spec.query.element_size(), 4)
        linear = spec.B * spec.H * (spec.L + spec.S) * max(spec.query.shape[-1], spec.value.shape[-1]) * item * 4
        if spec.return_weights or spec.dropout_p > 0 or spec.query.shape[-1] != spec.value.shape[-1]:
            return linear + materialised_bytes(spec, item)
        return linear

    def forward(self, spec: AttentionSpec) -> AttentionResult:
        qp, kp, v, groups = project_for_dot(spec)
        mask, is_causal = sdpa_mask(spec)
        mask, rows_ok = _guard_empty_rows(mask)
        if mask is not None and mask.dtype != torch.bool:
            mask = mask.to(qp.dtype)
        kwargs = {"enable_gqa": True} if groups > 1 else {}
        if spec.return_weights and spec.dropout_p == 0:
            return _with_weights(spec, qp, kp, v, groups, mask, is_causal, rows_ok)
        if spec.dropout_p > 0 and spec.generator is not None:
            seed = int(torch.randint(0, 2**62, (), generator=spec.generator, device=spec.generator.device))
            devices = [qp.device] if qp.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                out = F.scaled_dot_product_attention(
                    qp, kp, v, attn_mask=mask, dropout_p=spec.dropout_p, is_causal=is_causal, scale=spec.scale,
                    **kwargs,
                )
        else:
            out = F.scaled_dot_product_attention(
                qp, kp, v, attn_mask=mask, dropout_p=spec.dropout_p, is_causal=is_causal, scale=spec.scale, **kwargs
            )  # (B, H, L, Ev)
        if rows_ok is not None:
            out = out.masked_fill(~rows_ok, 0.0)
        if mask is None:
            out = keep_nan_rows(out, qp)
        weights = None
        if spec.return_weights:
            kp_full = expand_kv(kp, groups)  # (B, H, S, E)
            weights = materialise_weights(spec, qp, kp_full, ())
        return AttentionResult(output=out, weights=weights)
