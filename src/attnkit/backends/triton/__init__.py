"""Triton backends: ``triton_additive`` (fused Bahdanau attention) and ``triton_dot``.

Kernels and formulas: :mod:`attnkit.backends.triton.kernels` (FlashAttention-2
style, Dao 2023, arXiv:2307.08691). ``triton_additive`` runs Bahdanau et al.
2014 (arXiv:1409.0473) ``s = scale · vᵀ tanh(W_q q + W_k k + b)`` without ever
storing a (L, S, D) tensor, forward and backward; ``triton_dot`` runs the dot
family where SDPA refuses the call: with a ``mask_mod`` (materialised once as a
boolean (B, H, L, S) mask, 1 byte per pair).

Both need CUDA. They also run on CPU tensors under ``TRITON_INTERPRET=1`` (set
before attnkit, and so triton, is imported), which is how ``make test`` checks
them without a GPU: ``devices`` then declares "cpu" too. Refused (with reasons):
score_mod, dropout, gradients into a float mask, non-softmax normalizers. Inputs
are made contiguous once (a copy when strided). Weights on request are
recomputed from the kernel's log-sum-exp.

triton is an optional dependency: the kernels (and triton with them) are imported
with this package where they can run (triton installed, and a CUDA GPU or the
interpreter); elsewhere triton is not imported at all and
:meth:`~_TritonBackend.unavailable_reason` says why the backends cannot run.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ...core.reference import expand_kv
from ...core.spec import AttentionResult, AttentionSpec, index_grids
from ..additive_tiles import is_plain_additive, separable_ok
from ..base import Backend, register_backend
from ..tiles import exp_safe_lse
from ..weights import materialise_weights, weights_bytes

__all__ = ["TritonAdditiveBackend", "TritonDotBackend", "triton_attention", "INTERPRETING"]

#: whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1 when triton is imported)
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"


def _unavailable() -> str | None:
    """Why the kernels cannot run in this process (None: they can); fixed at import."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install 'attnkit[triton]')"
    if not INTERPRETING and not torch.cuda.is_available():
        return "needs a CUDA GPU (none here); runs on CPU tensors only under TRITON_INTERPRET=1, for tests"
    return None


_UNAVAILABLE = _unavailable()
if _UNAVAILABLE is None:
    try:
        import triton

        from . import kernels
    except Exception as e:  # noqa: BLE001  (a broken triton install: the backends explain, attnkit still imports)
        _UNAVAILABLE = f"triton failed to import ({type(e).__name__}: {e})"


def _next_pow2(n: int, lo: int = 16) -> int:
    p = lo
    while p < n:
        p *= 2
    return p


def _bias(spec: AttentionSpec) -> tuple[Tensor | None, bool]:
    """The spec's mask (and materialised mask_mod) as a (B, H, L, S)-broadcast tensor: (tensor, is_bool)."""
    mask = spec.mask
    if spec.mask_mod is not None:
        b, h, qi, ki = index_grids(spec.B, spec.H, spec.L, spec.S, spec.device)
        allowed = spec.mask_mod(b, h, qi, ki).to(torch.bool)
        if mask is None:
            mask = allowed
        elif mask.dtype == torch.bool:
            mask = mask & allowed
        else:
            mask = mask.masked_fill(~allowed, float("-inf"))
    if mask is None:
        return None, False
    is_bool = mask.dtype == torch.bool
    if is_bool:
        mask = mask.to(torch.uint8)
    return mask.expand(spec.B, spec.H, spec.L, spec.S), is_bool  # stride 0 on broadcast dims


class _Launch:
    """Everything a kernel launch needs besides the tensors that change between passes."""

    def __init__(self, spec: AttentionSpec, additive: bool, blocks: tuple[int, int], separable: bool = False) -> None:
        self.spec = spec
        self.additive = additive
        #: the additive kernels read exp(2 qp), exp(2 kp) (see kernels' docstring)
        self.separable = separable
        self.bq, self.bk = blocks
        self.causal_offset = 0 if spec.causal != "bottom_right" else spec.S - spec.L
        self.bias, self.bias_bool = _bias(spec)

    def features(self, qp: Tensor, kp: Tensor) -> tuple[Tensor, Tensor]:
        """What the kernels read as q, k: qp, kp, or exp(2 qp), exp(2 kp) in float32 when separable."""
        if not self.separable:
            return qp, kp
        return torch.exp(2 * qp.float()), torch.exp(2 * kp.float())  # (B, H, L, D), (B, H, S, D)

    def common(self, qp: Tensor, kp: Tensor, v: Tensor, va: Tensor, out_like: Tensor) -> tuple[list[Any], dict]:
        B, H, L, D = qp.shape
        S, EV = kp.shape[2], v.shape[3]
        bias = self.bias if self.bias is not None else qp  # never read when HAS_BIAS is False
        sb = self.bias.stride() if self.bias is not None else (0, 0, 0, 0)
        args = [
            *qp.stride()[:3], *kp.stride()[:3], *v.stride()[:3], va.stride(0) if va.dim() == 2 else 0,
            *sb, *out_like.stride()[:3],
            H, L, S, D, EV, float(self.spec.scale), self.causal_offset,
        ]
        meta = dict(
            IS_ADDITIVE=self.additive, HAS_BIAS=self.bias is not None, BIAS_BOOL=self.bias_bool,
            CAUSAL=self.spec.causal is not None, BQ=self.bq, BK=self.bk, BD=_next_pow2(D), BE=_next_pow2(EV),
            # float32 inputs: exact products; half inputs: tensor cores (TF32 on the float32 tiles)
            PRECISION="ieee" if v.dtype == torch.float32 else "tf32",
            SEPARABLE=self.separable,
        )
        return [bias, args], meta


def _forward(launch: _Launch, qp: Tensor, kp: Tensor, v: Tensor, va: Tensor) -> tuple[Tensor, Tensor]:
    B, H, L, _ = qp.shape
    out = torch.empty(B, H, L, v.shape[-1], device=qp.device, dtype=v.dtype)
    lse = torch.empty(B, H, L, device=qp.device, dtype=torch.float32)
    (bias, args), meta = launch.common(qp, kp, v, va, out)
    grid = (triton.cdiv(L, launch.bq), B * H)
    kernels.attn_fwd[grid](qp, kp, v, va, bias, out, lse, *args, **meta)
    return out, lse


class _TritonFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qp, kp, v, va, launch):  # type: ignore[override]
        qf, kf = launch.features(qp, kp)
        out, lse = _forward(launch, qf, kf, v, va)
        ctx.launch = launch
        ctx.dtypes = (qp.dtype, kp.dtype)
        ctx.save_for_backward(qf, kf, v, va, out, lse)
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, _dlse):  # type: ignore[override]
        launch: _Launch = ctx.launch
        qp, kp, v, va, out, lse = ctx.saved_tensors
        B, H, L, D = qp.shape
        S = kp.shape[2]
        dout = dout.contiguous()
        delta = (dout.float() * out.float()).sum(-1).contiguous()  # (B, H, L)
        lse_safe = exp_safe_lse(lse)  # (B, H, L)
        dqp = torch.empty(qp.shape, device=qp.device, dtype=torch.float32)
        dkp = torch.empty(kp.shape, device=qp.device, dtype=torch.float32)
        dv = torch.empty(v.shape, device=qp.device, dtype=torch.float32)
        n_kblocks = triton.cdiv(S, launch.bk)
        dva = torch.zeros(n_kblocks, B * H, D, device=qp.device, dtype=torch.float32)
        (bias, args), meta = launch.common(qp, kp, v, va, dout)
        kernels.attn_bwd_dkv[(n_kblocks, B * H)](qp, kp, v, va, bias, dout, lse_safe, delta, dkp, dv, dva,
                                                  *args, **meta)
        kernels.attn_bwd_dq[(triton.cdiv(L, launch.bq), B * H)](qp, kp, v, va, bias, dout, lse_safe, delta, dqp,
                                                                 *args, **meta)
        dva_t = None
        if launch.additive and ctx.needs_input_grad[3]:
            per_head = dva.sum(0).view(B, H, D).sum(0)  # (H, D)
            dva_t = (per_head if va.dim() == 2 else per_head.sum(0)).to(va.dtype)
        return dqp.to(ctx.dtypes[0]), dkp.to(ctx.dtypes[1]), dv.to(v.dtype), dva_t, None


def triton_attention(spec: AttentionSpec, *, block_q: int | None = None, block_k: int | None = None) -> AttentionResult:
    """Run ``spec`` on the Triton kernels (CUDA, or CPU under TRITON_INTERPRET=1)."""
    if _UNAVAILABLE is not None:
        raise RuntimeError(f"the Triton kernels cannot run here: {_UNAVAILABLE}")
    additive = is_plain_additive(spec.score)
    k = expand_kv(spec.key, spec.groups)  # (B, H, S, Ek)
    v = expand_kv(spec.value, spec.groups)  # (B, H, S, Ev)
    qp, kp = spec.score.project(spec.query, k)
    qp, kp, v = qp.contiguous(), kp.contiguous(), v.contiguous()  # (B, H, N, D): one copy if strided
    if additive:
        va = spec.score.params()[0].contiguous()
    else:
        va = torch.zeros(1, device=qp.device, dtype=qp.dtype)
    default = (16, 16) if additive else (64, 64)
    blocks = (block_q or default[0], block_k or default[1])
    launch = _Launch(spec, additive, blocks, separable=additive and separable_ok(qp, kp))
    out, lse = _TritonFunction.apply(qp, kp, v, va, launch)
    weights = None
    if spec.return_weights:
        weights = materialise_weights(spec, qp, kp, list(spec.score.params()), lse=None)
    return AttentionResult(output=out, weights=weights, lse=lse)


class _TritonBackend(Backend):
    #: the interpreter runs the kernels on CPU tensors
    devices = ("cuda", "cpu") if INTERPRETING else ("cuda",)
    dtypes = (torch.float16, torch.bfloat16, torch.float32)
    supports_score_mod = False
    supports_dropout = False
    softmax_only = True
    max_head_dim = 256

    def unavailable_reason(self) -> str | None:
        return _UNAVAILABLE

    def not_supported_reasons(self, spec: AttentionSpec) -> list[str]:
        reasons = super().not_supported_reasons(spec)
        if spec.mask is not None and spec.mask.is_floating_point() and spec.mask.requires_grad:
            reasons.append("no gradient into a float mask (use chunked)")
        return reasons

    def memory_bytes(self, spec: AttentionSpec) -> int:
        item = 4
        linear = spec.B * spec.H * (spec.L + spec.S) * (spec.query.shape[-1] + spec.value.shape[-1]) * item * 4
        extra = spec.B * spec.H * spec.L * spec.S if spec.mask_mod is not None else 0
        if spec.return_weights:  # recomputed by materialise_weights, rows of 256
            ps = spec.score.params()
            extra += weights_bytes(spec, ps[0].shape[-1] if ps else spec.query.shape[-1])
        return linear + extra

    def forward(self, spec: AttentionSpec) -> AttentionResult:
        return triton_attention(spec)


@register_backend
class TritonAdditiveBackend(_TritonBackend):
    name = "triton_additive"
    priority = 80
    description = "fused Triton kernel for Bahdanau's additive score, forward and backward"
    notes = "memory O(B·H·(L+S)·D); the tanh tile stays in registers; mask_mod materialised as a bool mask"

    def not_supported_reasons(self, spec: AttentionSpec) -> list[str]:
        reasons = super().not_supported_reasons(spec)
        if not is_plain_additive(spec.score):
            reasons.append(f"score {spec.score.name!r} is not additive")
        return reasons


@register_backend
class TritonDotBackend(_TritonBackend):
    name = "triton_dot"
    priority = 70
    description = "Triton flash kernel for the dot family with a bias, a bool mask or a mask_mod"
    notes = "memory O(B·H·(L+S)·E); mask_mod materialised once as a bool mask (1 byte per pair)"
    dot_scores_only = True
