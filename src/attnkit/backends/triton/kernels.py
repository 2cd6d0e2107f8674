"""Triton kernels: fused attention for the additive score and for dot products with a bias.

Forward (one program per (query block, batch·head)), online softmax over key
blocks (Dao 2023, FlashAttention-2, arXiv:2307.08691):
``o_i = Σ_j exp(s_ij - lse_i) v_j`` with, per tile,

* additive (Bahdanau et al. 2014, arXiv:1409.0473): ``s_ij = scale · Σ_d va_d tanh(qp_id + kp_jd)``,
  the (BQ, BK, D) tanh tile living in registers only;
* dot: ``s_ij = scale · qp_i · kp_j``;

plus a float bias or a boolean mask (any broadcast of (B, H, L, S), read with
its strides), causal (top-left or bottom-right via ``causal_offset``). Rows with
no allowed key give output 0 and lse = -inf.

Backward (FA2): ``D_i = Σ dO_i O_i`` (computed outside), one kernel per key
block for dkp, dv and the additive ``va`` partial sums, one per query block for
dqp; ``dS = P (dP - D)``, ``dP = dO vᵀ``; for the additive score
``g = scale · dS · va · (1 - t²)``, ``dqp = Σ_j g``, ``dkp = Σ_i g``,
``dva = scale Σ_ij dS t``.

tanh is written ``1 - 2 / (exp(2x) + 1)`` (exact at ±inf, runs under the
interpreter). With ``SEPARABLE`` the additive kernels receive ``exp(2 qp)`` and
``exp(2 kp)`` instead of qp, kp (taken once per token by the caller, while
|qp|, |kp| <= 20 keeps their product inside float32), so a pair and feature costs
a multiply and a reciprocal instead of an exp and a reciprocal; the gradients are
still with respect to qp, kp (``1 - t²`` does not care how t was formed). Set
``TRITON_INTERPRET=1`` before importing triton to run these on CPU tensors (the tests do, at tiny sizes).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tanh(x):
    return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


@triton.jit
def _pair_tanh(q, k, SEPARABLE: tl.constexpr):
    """t = tanh(qp_i + kp_j), (BQ, BK, D), from qp, kp or (SEPARABLE) from exp(2 qp), exp(2 kp)."""
    if SEPARABLE:
        return 1.0 - 2.0 / (q[:, None, :] * k[None, :, :] + 1.0)
    return _tanh(q[:, None, :] + k[None, :, :])


@triton.jit
def _scores(q, k, va, offs_q, offs_k, b, h, L, S, scale, causal_offset,
            BIAS, sb_b, sb_h, sb_l, sb_s,
            IS_ADDITIVE: tl.constexpr, HAS_BIAS: tl.constexpr, BIAS_BOOL: tl.constexpr, CAUSAL: tl.constexpr,
            PRECISION: tl.constexpr, SEPARABLE: tl.constexpr):
    """Masked, scaled scores (BQ, BK) of a tile; forbidden positions are -inf."""
    if IS_ADDITIVE:
        t = _pair_tanh(q, k, SEPARABLE)  # (BQ, BK, D)
        s = tl.sum(t * va[None, None, :], axis=2)
    else:
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
    s = s * scale
    valid = (offs_q[:, None] < L) & (offs_k[None, :] < S)
    if HAS_BIAS:
        bptr = BIAS + b * sb_b + h * sb_h + offs_q[:, None] * sb_l + offs_k[None, :] * sb_s
        bias = tl.load(bptr, mask=valid, other=0)
        if BIAS_BOOL:
            valid = valid & (bias != 0)
        else:
            s = s + bias.to(tl.float32)
    if CAUSAL:
        valid = valid & (offs_k[None, :] <= offs_q[:, None] + causal_offset)
    return tl.where(valid, s, float("-inf"))


@triton.jit
def attn_fwd(QP, KP, V, VA, BIAS, OUT, LSE,
             sq_b, sq_h, sq_l, sk_b, sk_h, sk_s, sv_b, sv_h, sv_s, sva_h,
             sb_b, sb_h, sb_l, sb_s, so_b, so_h, so_l,
             H, L, S, D, EV, scale, causal_offset,
             IS_ADDITIVE: tl.constexpr, HAS_BIAS: tl.constexpr, BIAS_BOOL: tl.constexpr, CAUSAL: tl.constexpr,
             BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BE: tl.constexpr,
             PRECISION: tl.constexpr, SEPARABLE: tl.constexpr):
    pid_q = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_q = pid_q * BQ + tl.arange(0, BQ)
    offs_d = tl.arange(0, BD)
    offs_e = tl.arange(0, BE)
    q = tl.load(QP + b * sq_b + h * sq_h + offs_q[:, None] * sq_l + offs_d[None, :],
                mask=(offs_q[:, None] < L) & (offs_d[None, :] < D), other=0.0).to(tl.float32)
    va = tl.zeros([BD], dtype=tl.float32)
    if IS_ADDITIVE:
        va = tl.load(VA + h * sva_h + offs_d, mask=offs_d < D, other=0.0).to(tl.float32)
    m = tl.full([BQ], float("-inf"), dtype=tl.float32)
    m_safe = tl.zeros([BQ], dtype=tl.float32)
    l_sum = tl.zeros([BQ], dtype=tl.float32)
    acc = tl.zeros([BQ, BE], dtype=tl.float32)
    k_end = S
    if CAUSAL:
        k_end = tl.minimum(S, (pid_q + 1) * BQ + causal_offset)
    for k0 in range(0, k_end, BK):
        offs_k = k0 + tl.arange(0, BK)
        k = tl.load(KP + b * sk_b + h * sk_h + offs_k[:, None] * sk_s + offs_d[None, :],
                    mask=(offs_k[:, None] < S) & (offs_d[None, :] < D), other=0.0).to(tl.float32)
        s = _scores(q, k, va, offs_q, offs_k, b, h, L, S, scale, causal_offset, BIAS, sb_b, sb_h, sb_l, sb_s,
                    IS_ADDITIVE, HAS_BIAS, BIAS_BOOL, CAUSAL, PRECISION, SEPARABLE)
        m_new = tl.maximum(m, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp(s - m_safe[:, None])
        alpha = tl.exp(m - m_safe)
        l_sum = l_sum * alpha + tl.sum(p, 1)
        vt = tl.load(V + b * sv_b + h * sv_h + offs_k[:, None] * sv_s + offs_e[None, :],
                     mask=(offs_k[:, None] < S) & (offs_e[None, :] < EV), other=0.0).to(tl.float32)
        acc = acc * alpha[:, None] + tl.dot(p, vt, input_precision=PRECISION)
        m = m_new
    ok = l_sum != 0  # 0: no allowed key (output 0, lse -inf); NaN (a NaN input) stays NaN
    out = tl.where(ok[:, None], acc / tl.where(ok, l_sum, 1.0)[:, None], 0.0)
    lse = tl.where(ok, m_safe + tl.log(tl.where(ok, l_sum, 1.0)), float("-inf"))
    tl.store(OUT + b * so_b + h * so_h + offs_q[:, None] * so_l + offs_e[None, :], out.to(OUT.dtype.element_ty),
             mask=(offs_q[:, None] < L) & (offs_e[None, :] < EV))
    tl.store(LSE + bh * L + offs_q, lse, mask=offs_q < L)


@triton.jit
def attn_bwd_dkv(QP, KP, V, VA, BIAS, DO, LSE, DELTA, DKP, DV, DVA,
                 sq_b, sq_h, sq_l, sk_b, sk_h, sk_s, sv_b, sv_h, sv_s, sva_h,
                 sb_b, sb_h, sb_l, sb_s, so_b, so_h, so_l,
                 H, L, S, D, EV, scale, causal_offset,
                 IS_ADDITIVE: tl.constexpr, HAS_BIAS: tl.constexpr, BIAS_BOOL: tl.constexpr, CAUSAL: tl.constexpr,
                 BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BE: tl.constexpr,
             PRECISION: tl.constexpr, SEPARABLE: tl.constexpr):
    """dkp, dv of one key block (and its share of dva), looping over query blocks.

    DO, DKP, DV are contiguous like QP/KP/V with the o-strides (so_*) for DO;
    LSE holds +inf for rows with no allowed key."""
    pid_k = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_k = pid_k * BK + tl.arange(0, BK)
    offs_d = tl.arange(0, BD)
    offs_e = tl.arange(0, BE)
    kmask = offs_k < S
    k = tl.load(KP + b * sk_b + h * sk_h + offs_k[:, None] * sk_s + offs_d[None, :],
                mask=kmask[:, None] & (offs_d[None, :] < D), other=0.0).to(tl.float32)
    vt = tl.load(V + b * sv_b + h * sv_h + offs_k[:, None] * sv_s + offs_e[None, :],
                 mask=kmask[:, None] & (offs_e[None, :] < EV), other=0.0).to(tl.float32)
    va = tl.zeros([BD], dtype=tl.float32)
    if IS_ADDITIVE:
        va = tl.load(VA + h * sva_h + offs_d, mask=offs_d < D, other=0.0).to(tl.float32)
    dk = tl.zeros([BK, BD], dtype=tl.float32)
    dv = tl.zeros([BK, BE], dtype=tl.float32)
    dva = tl.zeros([BD], dtype=tl.float32)
    q_start = 0
    if CAUSAL:
        q_start = tl.maximum(0, pid_k * BK - causal_offset) // BQ * BQ
    for q0 in range(q_start, L, BQ):
        offs_q = q0 + tl.arange(0, BQ)
        qmask = offs_q < L
        q = tl.load(QP + b * sq_b + h * sq_h + offs_q[:, None] * sq_l + offs_d[None, :],
                    mask=qmask[:, None] & (offs_d[None, :] < D), other=0.0).to(tl.float32)
        do = tl.load(DO + b * so_b + h * so_h + offs_q[:, None] * so_l + offs_e[None, :],
                     mask=qmask[:, None] & (offs_e[None, :] < EV), other=0.0).to(tl.float32)
        lse = tl.load(LSE + bh * L + offs_q, mask=qmask, other=float("inf"))
        delta = tl.load(DELTA + bh * L + offs_q, mask=qmask, other=0.0)
        s = _scores(q, k, va, offs_q, offs_k, b, h, L, S, scale, causal_offset, BIAS, sb_b, sb_h, sb_l, sb_s,
                    IS_ADDITIVE, HAS_BIAS, BIAS_BOOL, CAUSAL, PRECISION, SEPARABLE)
        p = tl.exp(s - lse[:, None])  # (BQ, BK)
        dv += tl.dot(tl.trans(p), do, input_precision=PRECISION)
        dp = tl.dot(do, tl.trans(vt), input_precision=PRECISION)
        ds = p * (dp - delta[:, None]) * scale
        if IS_ADDITIVE:
            t = _pair_tanh(q, k, SEPARABLE)  # (BQ, BK, D)
            g = ds[:, :, None] * va[None, None, :] * (1.0 - t * t)
            dk += tl.sum(g, axis=0)
            dva += tl.sum(tl.sum(ds[:, :, None] * t, axis=0), axis=0)
        else:
            dk += tl.dot(tl.trans(ds), q, input_precision=PRECISION)
    tl.store(DKP + b * sk_b + h * sk_h + offs_k[:, None] * sk_s + offs_d[None, :], dk,
             mask=kmask[:, None] & (offs_d[None, :] < D))
    tl.store(DV + b * sv_b + h * sv_h + offs_k[:, None] * sv_s + offs_e[None, :], dv,
             mask=kmask[:, None] & (offs_e[None, :] < EV))
    if IS_ADDITIVE:
        tl.store(DVA + (pid_k * tl.num_programs(1) + bh) * D + offs_d, dva, mask=offs_d < D)


@triton.jit
def attn_bwd_dq(QP, KP, V, VA, BIAS, DO, LSE, DELTA, DQP,
                sq_b, sq_h, sq_l, sk_b, sk_h, sk_s, sv_b, sv_h, sv_s, sva_h,
                sb_b, sb_h, sb_l, sb_s, so_b, so_h, so_l,
                H, L, S, D, EV, scale, causal_offset,
                IS_ADDITIVE: tl.constexpr, HAS_BIAS: tl.constexpr, BIAS_BOOL: tl.constexpr, CAUSAL: tl.constexpr,
                BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BE: tl.constexpr,
             PRECISION: tl.constexpr, SEPARABLE: tl.constexpr):
    """dqp of one query block, looping over key blocks."""
    pid_q = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_q = pid_q * BQ + tl.arange(0, BQ)
    offs_d = tl.arange(0, BD)
    offs_e = tl.arange(0, BE)
    qmask = offs_q < L
    q = tl.load(QP + b * sq_b + h * sq_h + offs_q[:, None] * sq_l + offs_d[None, :],
                mask=qmask[:, None] & (offs_d[None, :] < D), other=0.0).to(tl.float32)
    do = tl.load(DO + b * so_b + h * so_h + offs_q[:, None] * so_l + offs_e[None, :],
                 mask=qmask[:, None] & (offs_e[None, :] < EV), other=0.0).to(tl.float32)
    lse = tl.load(LSE + bh * L + offs_q, mask=qmask, other=float("inf"))
    delta = tl.load(DELTA + bh * L + offs_q, mask=qmask, other=0.0)
    va = tl.zeros([BD], dtype=tl.float32)
    if IS_ADDITIVE:
        va = tl.load(VA + h * sva_h + offs_d, mask=offs_d < D, other=0.0).to(tl.float32)
    dq = tl.zeros([BQ, BD], dtype=tl.float32)
    k_end = S
    if CAUSAL:
        k_end = tl.minimum(S, (pid_q + 1) * BQ + causal_offset)
    for k0 in range(0, k_end, BK):
        offs_k = k0 + tl.arange(0, BK)
        kmask = offs_k < S
        k = tl.load(KP + b * sk_b + h * sk_h + offs_k[:, None] * sk_s + offs_d[None, :],
                    mask=kmask[:, None] & (offs_d[None, :] < D), other=0.0).to(tl.float32)
        vt = tl.load(V + b * sv_b + h * sv_h + offs_k[:, None] * sv_s + offs_e[None, :],
                     mask=kmask[:, None] & (offs_e[None, :] < EV), other=0.0).to(tl.float32)
        s = _scores(q, k, va, offs_q, offs_k, b, h, L, S, scale, causal_offset, BIAS, sb_b, sb_h, sb_l, sb_s,
                    IS_ADDITIVE, HAS_BIAS, BIAS_BOOL, CAUSAL, PRECISION, SEPARABLE)
        p = tl.exp(s - lse[:, None])
        dp = tl.dot(do, tl.trans(vt), input_precision=PRECISION)
        ds = p * (dp - delta[:, None]) * scale
        if IS_ADDITIVE:
            t = _pair_tanh(q, k, SEPARABLE)
            dq += tl.sum(ds[:, :, None] * va[None, None, :] * (1.0 - t * t), axis=1)
        else:
            dq += tl.dot(ds, k, input_precision=PRECISION)
    tl.store(DQP + b * sq_b + h * sq_h + offs_q[:, None] * sq_l + offs_d[None, :], dq,
             mask=qmask[:, None] & (offs_d[None, :] < D))
