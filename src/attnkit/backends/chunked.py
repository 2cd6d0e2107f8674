"""The ``chunked`` backend: attention for ANY score in memory linear in the sequence.

Online softmax over key blocks (Milakov & Gimelshein 2018, arXiv:1805.02867;
Rabe & Staats 2021, arXiv:2112.05682) with a FlashAttention-2 style backward
(Dao 2023, arXiv:2307.08691) that recomputes each tile from the saved
log-sum-exp instead of storing it:

``o_i = Σ_j exp(s_ij - lse_i) v_j``;  backward ``D_i = Σ_e dO_ie O_ie``,
``dS_ij = P_ij (dP_ij - D_i + dlse_i)`` with ``dP_ij = dO_i · v_j``.

The score is split as in :mod:`attnkit.core.scores`: ``project(q, k)``
runs once per token (ordinary autograd), ``pairwise(qp, kp, *params)`` runs per
(block_q, block_k) tile, so Bahdanau's additive score (Bahdanau et al. 2014,
arXiv:1409.0473) holds one (B, H, block_q, block_k, D) tanh tile at a time:
peak memory O(B·H·(L + S)·D + B·H·block_q·block_k·D), never O(B·H·L·S·D).
The gradient of a tile with respect to qp, kp, the pairwise params (additive's
v) and a float mask comes from autograd on the recomputed tile
(``torch.autograd.grad(s_tile, inputs, dS)``), so user Score subclasses work
unchanged.

Bahdanau's score takes a closed form with no tanh at all: ``tanh(x) = 1 - 2 r``,
``r = 1 / (exp(2x) + 1)``, and ``exp(2(qp_i + kp_j)) = exp(2 qp_i) exp(2 kp_j)``, so
the exponentials are taken once per token and a pair costs a multiply, an add and
a division per feature (used while |qp|, |kp| <= 20 keeps the product inside
float32; beyond that the exp is taken per pair). Its gradients are closed form too
(``1 - t² = 4 r (1 - r)``), and compiled (``torch.compile``) tiles keep the
(.., D) intermediate in registers, so a tile holds only its (B, H, bq, bk) scores.
Masks, causal (fully hidden key blocks are skipped), ``score_mod``
and ``mask_mod`` are applied per tile by ``reference.apply_masks``.

Dropout draws each tile's keep-mask from a seed taken once from ``generator``
(the same tile gets the same mask in backward); the numbers differ from the
math backend's, the distribution does not.

Example::

    >>> from attnkit.backends.chunked import chunked_attention
    >>> out = attention(q, k, v, score="additive", score_params=p, backend="chunked")
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..core.masks import mask_index
from ..core.reference import expand_kv
from ..core.scores import Additive
from ..core.spec import AttentionResult, AttentionSpec
from .base import BACKENDS, Backend, format_bytes, register_backend
from .tiles import TileScorer, blocks
from .weights import materialise_weights

__all__ = ["ChunkedBackend", "chunked_attention", "auto_blocks", "captured_grad_tensors"]

#: elements of the (B, H, block_q, block_k, D) pairwise intermediate one tile may hold.
TILE_ELEMENTS = 1 << 21
#: pairs (B·H·block_q·block_k) of one compiled additive tile, whose (.., D) intermediate
#: stays in registers: only the (B, H, block_q, block_k) scores are held (2 MiB).
FUSED_PAIRS = 1 << 19
#: auto passes calls whose materialised (math backend) footprint is at most this to math:
#: there one fused pass beats a tile loop (at B=4, L=S=256, D=128, additive fwd+bwd:
#: math 0.2 s, chunked 1.5 s; for one decoder query over 20-100 keys math is 4-5x faster).
SMALL_FOR_MATH = 256 << 20
#: compile="auto" compiles the additive tiles when B·H·L·S·D reaches this (compilation
#: takes seconds once per shape; below this the eager tiles finish sooner).
COMPILE_MIN_WORK = 1 << 27


#: |qp|, |kp| bound of the separable form: exp(2·(a + b)) stays inside float32's range.
SEPARABLE_BOUND = 20.0


def separable_ok(qp: Tensor, kp: Tensor) -> bool:
    """Whether the separable form is exact here: |qp|, |kp| <= SEPARABLE_BOUND everywhere (one read of each)."""
    if not (qp.numel() and kp.numel()):
        return True
    return max(qp.detach().abs().amax().item(), kp.detach().abs().amax().item()) <= SEPARABLE_BOUND


def additive_pair(qf: Tensor, kf: Tensor, v: Tensor, separable: bool) -> Tensor:
    """``Σ_d v_d tanh(qp_id + kp_jd)`` without a tanh: (B, H, bq, D), (B, H, bk, D) -> (B, H, bq, bk).

    ``tanh(x) = 1 - 2 r`` with ``r = 1 / (exp(2x) + 1)``. ``separable``: qf = exp(2 qp) and
    kf = exp(2 kp) were taken once per token, so ``exp(2(qp_i + kp_j)) = qf_i kf_j`` costs one
    multiply per pair and feature (9.4 against 1.3 G pair-features/s for a compiled tanh
    tile, measured once on this 2-core CPU);
    otherwise qf, kf are qp, kp and the exp is taken per pair (2-3x a tanh tile).
    v: (D,) or per head (H, 1, 1, D).
    """
    return ((1 - 2 * _additive_r(qf, kf, separable)) * v).sum(-1)


def additive_pair_grads(
    qf: Tensor, kf: Tensor, v: Tensor, dpair: Tensor, separable: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Closed-form gradients of ``pair = Σ_d v_d t_ijd`` (t = tanh(qp_i + kp_j)) given dpair (B, H, bq, bk).

    ``∂t/∂x = 1 - t² = 4 r (1 - r)``; ``g = dpair_ij v 4 r (1 - r)``: dqp = Σ_j g,
    dkp = Σ_i g, dv = Σ_ij dpair_ij t (per head, (H, D); the caller sums a shared v).
    r is recomputed from qf, kf (see :func:`additive_pair`), so backward never stores a
    (bq, bk, D) tile.
    """
    r = _additive_r(qf, kf, separable)  # (B, H, bq, bk, D)
    dsv = dpair.unsqueeze(-1)  # (B, H, bq, bk, 1)
    g = dsv * v * (4 * r * (1 - r))  # (B, H, bq, bk, D)
    return g.sum(-2), g.sum(-3), (dsv * (1 - 2 * r)).sum((0, 2, 3))


def _additive_r(qf: Tensor, kf: Tensor, separable: bool) -> Tensor:
    """``r = 1 / (exp(2 (qp_i + kp_j)) + 1)``, (B, H, bq, bk, D); see :func:`additive_pair`."""
    if separable:
        return 1 / (qf.unsqueeze(-2) * kf.unsqueeze(-3) + 1)
    return 1 / (torch.exp(2 * (qf.unsqueeze(-2) + kf.unsqueeze(-3))) + 1)


def _sep_pair(qf: Tensor, kf: Tensor, v: Tensor) -> Tensor:
    return additive_pair(qf, kf, v, True)


def _exp_pair(qf: Tensor, kf: Tensor, v: Tensor) -> Tensor:
    return additive_pair(qf, kf, v, False)


def _sep_grads(qf: Tensor, kf: Tensor, v: Tensor, dpair: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return additive_pair_grads(qf, kf, v, dpair, True)


def _exp_grads(qf: Tensor, kf: Tensor, v: Tensor, dpair: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return additive_pair_grads(qf, kf, v, dpair, False)


def _exp2(x: Tensor) -> Tensor:
    """Per-token features of the separable form: exp(2 x)."""
    return torch.exp(2 * x)


class _Compiled:
    """torch.compile of the additive tile functions, built on first use; eager on failure."""

    def __init__(self) -> None:
        self.fns: dict[str, Any] = {}
        self.failed: str | None = None

    def get(self, name: str, eager: Any) -> Any:
        if self.failed is not None:
            return eager
        if name not in self.fns:
            try:
                self.fns[name] = torch.compile(eager, fullgraph=True)
            except Exception as e:  # noqa: BLE001  (no compiler on this machine: stay eager)
                self.failed = f"{type(e).__name__}: {e}"
                return eager
        compiled = self.fns[name]

        def call(*args: Tensor) -> Any:
            if self.failed is not None:
                return eager(*args)
            try:
                return compiled(*args)
            except Exception as e:  # noqa: BLE001  (compilation happens at the first call)
                self.failed = f"{type(e).__name__}: {e}"
                return eager(*args)

        return call


COMPILED = _Compiled()


def auto_blocks(B: int, H: int, L: int, S: int, pair_features: int) -> tuple[int, int]:
    """(block_q, block_k): tiles of about TILE_ELEMENTS intermediate elements."""
    bk = min(S, 256 if pair_features == 1 else 64)
    bq = TILE_ELEMENTS // max(1, B * H * bk * pair_features)
    bq = max(16, min(L, bq))
    if bq == 16 and B * H * bq * bk * pair_features > TILE_ELEMENTS:
        bk = max(16, min(S, TILE_ELEMENTS // max(1, B * H * bq * pair_features)))
    return bq, bk


def captured_grad_tensors(fn: Any) -> list[str]:
    """Names of tensors requiring grad captured in ``fn``'s closure (the custom
    backward cannot reach them, so such a call must go to a backend that can)."""
    names = []
    code = getattr(fn, "__code__", None)
    for name, cell in zip(getattr(code, "co_freevars", ()), getattr(fn, "__closure__", None) or ()):
        try:
            val = cell.cell_contents
        except ValueError:
            continue
        if isinstance(val, Tensor) and val.requires_grad:
            names.append(name)
    return names


@dataclasses.dataclass
class _Config:
    scorer: TileScorer
    block_q: int
    block_k: int
    dropout_p: float
    seed: int
    work: torch.dtype
    #: closed-form additive backward (None: autograd on the recomputed tile), its
    #: pairwise tile and the per-token feature map applied to qp, kp before both
    #: (exp(2x) for the separable form, None: tiles take qp, kp themselves).
    additive_grads: Any = None
    additive_pair: Any = None
    additive_pre: Any = None


def _keep(cfg: _Config, shape: tuple[int, ...], device: torch.device, q0: int, k0: int) -> Tensor:
    """Dropout keep-mask of tile (q0, k0): reproducible from the call's seed."""
    g = torch.Generator(device=device)
    g.manual_seed((cfg.seed * 1_000_003 + q0 * 65_537 + k0) % (2**63 - 1))
    return torch.rand(shape, generator=g, device=device, dtype=cfg.work) >= cfg.dropout_p


def _forward(
    cfg: _Config, qp: Tensor, kp: Tensor, v: Tensor, mask: Tensor | None, params: Sequence[Tensor]
) -> tuple[Tensor, Tensor]:
    """Online-softmax forward: output (B, H, L, Ev) and lse (B, H, L) in cfg.work."""
    B, H, L, _ = qp.shape
    S, Ev = kp.shape[-2], v.shape[-1]
    sc = cfg.scorer
    out = torch.empty(B, H, L, Ev, dtype=cfg.work, device=qp.device)
    lse = torch.empty(B, H, L, dtype=cfg.work, device=qp.device)
    for q0, q1 in blocks(L, cfg.block_q):
        q_t = qp[:, :, q0:q1]
        m = torch.full((B, H, q1 - q0, 1), float("-inf"), dtype=cfg.work, device=qp.device)
        m_safe = torch.zeros_like(m)
        l = torch.zeros_like(m)  # noqa: E741  (the paper's running sum ℓ)
        acc = torch.zeros(B, H, q1 - q0, Ev, dtype=cfg.work, device=qp.device)
        for k0, k1 in blocks(S, cfg.block_k):
            if not sc.visible(q0, q1, k0):
                break
            s = sc(q_t, kp[:, :, k0:k1], params, sc.mask_tile(mask, q0, q1, k0, k1), q0, k0)  # (B, H, bq, bk)
            m_new = torch.maximum(m, s.amax(-1, keepdim=True))
            m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
            p = torch.exp(s - m_safe)
            alpha = torch.exp(m - m_safe)
            l = l * alpha + p.sum(-1, keepdim=True)  # noqa: E741
            if cfg.dropout_p > 0:
                p = p * _keep(cfg, p.shape, p.device, q0, k0) / (1.0 - cfg.dropout_p)
            acc = acc * alpha + p @ v[:, :, k0:k1]  # (B, H, bq, Ev)
            m = m_new
        ok = l > 0
        out[:, :, q0:q1] = torch.where(ok, acc / torch.where(ok, l, torch.ones_like(l)), torch.zeros_like(acc))
        lse[:, :, q0:q1] = torch.where(ok, m_safe + torch.log(l), torch.full_like(l, float("-inf"))).squeeze(-1)
    return out, lse


def _backward(
    cfg: _Config,
    qp: Tensor,
    kp: Tensor,
    v: Tensor,
    mask: Tensor | None,
    params: Sequence[Tensor],
    out: Tensor,
    lse: Tensor,
    dout: Tensor,
    dlse: Tensor | None,
    needs: Sequence[bool],
) -> tuple[Tensor | None, ...]:
    """Gradients (dqp, dkp, dv, dmask, *dparams), recomputing tiles from lse."""
    need_q, need_k, need_v, need_mask, *need_p = needs
    B, H, L, _ = qp.shape
    S = kp.shape[-2]
    sc = cfg.scorer
    D = (dout * out).sum(-1, keepdim=True)  # (B, H, L, 1)
    if dlse is not None:
        D = D - dlse.unsqueeze(-1)  # dS = P (dP - D + dlse)
    lse_safe = torch.where(torch.isfinite(lse), lse, torch.full_like(lse, float("inf"))).unsqueeze(-1)
    dqp = torch.zeros_like(qp) if need_q else None
    dkp = torch.zeros_like(kp) if need_k else None
    dv = torch.zeros_like(v) if need_v else None
    dmask = torch.zeros(mask.shape, dtype=cfg.work, device=mask.device) if need_mask and mask is not None else None
    p_leaves = [p.detach().requires_grad_(n) for p, n in zip(params, need_p)]
    dparams = [torch.zeros_like(p) if n else None for p, n in zip(params, need_p)]
    for q0, q1 in blocks(L, cfg.block_q):
        q_t = qp[:, :, q0:q1].detach().requires_grad_(need_q)
        do_t = dout[:, :, q0:q1]  # (B, H, bq, Ev)
        for k0, k1 in blocks(S, cfg.block_k):
            if not sc.visible(q0, q1, k0):
                break
            k_t = kp[:, :, k0:k1].detach().requires_grad_(need_k)
            m_t = sc.mask_tile(mask, q0, q1, k0, k1)
            if dmask is not None:
                m_t = m_t.detach().requires_grad_(True)
            if cfg.additive_grads is not None:
                (v_par,) = params  # q_t, k_t hold the per-token features (cfg.additive_pre)
                pair = cfg.additive_pair(q_t.detach(), k_t.detach(), _head_v(v_par))  # (B, H, bq, bk)
                s = sc.finish(pair, m_t.detach() if m_t is not None else None, q0, k0)
            else:
                with torch.enable_grad():
                    s = sc(q_t, k_t, p_leaves, m_t, q0, k0)  # (B, H, bq, bk)
            p = torch.exp(s.detach() - lse_safe[:, :, q0:q1])
            v_t = v[:, :, k0:k1]
            dp = do_t @ v_t.transpose(-1, -2)  # (B, H, bq, bk)
            if cfg.dropout_p > 0:
                keep = _keep(cfg, p.shape, p.device, q0, k0).to(p.dtype) / (1.0 - cfg.dropout_p)
                p_drop, dp = p * keep, dp * keep
            else:
                p_drop = p
            if dv is not None:
                dv[:, :, k0:k1] += p_drop.transpose(-1, -2) @ do_t
            ds = p * (dp - D[:, :, q0:q1])
            if cfg.additive_grads is not None:
                gq, gk, gv = cfg.additive_grads(q_t.detach(), k_t.detach(), _head_v(v_par), ds * sc.scale)
                if need_q:
                    dqp[:, :, q0:q1] += gq
                if need_k:
                    dkp[:, :, k0:k1] += gk
                if need_p and need_p[0]:
                    dparams[0] += gv if v_par.dim() == 2 else gv.sum(0)
                if dmask is not None:
                    dmask[mask_index(mask, q0, q1, k0, k1)] += ds.sum_to_size(m_t.shape)
                continue
            inputs = [t for t, n in ((q_t, need_q), (k_t, need_k)) if n]
            inputs += [t for t in p_leaves if t.requires_grad]
            if dmask is not None:
                inputs.append(m_t)
            if not inputs:
                continue
            grads = list(torch.autograd.grad(s, inputs, ds, allow_unused=True))
            if need_q:
                g = grads.pop(0)
                if g is not None:
                    dqp[:, :, q0:q1] += g
            if need_k:
                g = grads.pop(0)
                if g is not None:
                    dkp[:, :, k0:k1] += g
            for i, t in enumerate(p_leaves):
                if t.requires_grad:
                    g = grads.pop(0)
                    if g is not None:
                        dparams[i] += g
            if dmask is not None:
                g = grads.pop(0)
                if g is not None:
                    dmask[mask_index(mask, q0, q1, k0, k1)] += g
    return (dqp, dkp, dv, dmask, *dparams)


class _ChunkedFunction(torch.autograd.Function):
    """(qp, kp, v, mask, cfg, *params) -> (output, lse), backward by recomputation."""

    @staticmethod
    def forward(ctx, qp, kp, v, mask, cfg, *params):  # type: ignore[override]
        w = cfg.work
        qw, kw, vw = qp.to(w), kp.to(w), v.to(w)
        pw = [p.to(w) for p in params]
        if cfg.additive_pre is not None:  # tiles read per-token features, not qp, kp
            qw, kw = cfg.additive_pre(qw), cfg.additive_pre(kw)
        out, lse = _forward(cfg, qw, kw, vw, mask, pw)
        ctx.set_materialize_grads(False)
        ctx.cfg = cfg
        ctx.dtypes = (qp.dtype, kp.dtype, v.dtype, None if mask is None else mask.dtype, *[p.dtype for p in params])
        ctx.save_for_backward(qp, kp, v, mask, out, lse, *params)
        out_c = out.to(qp.dtype)
        return out_c, lse

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dlse):  # type: ignore[override]
        qp, kp, v, mask, out, lse, *params = ctx.saved_tensors
        cfg: _Config = ctx.cfg
        w = cfg.work
        if dout is None:  # only the lse (the weights) was used
            dout = torch.zeros_like(out)
        needs = list(ctx.needs_input_grad[:4]) + list(ctx.needs_input_grad[5:])
        needs[3] = needs[3] and mask is not None and mask.is_floating_point()
        qw, kw = qp.to(w), kp.to(w)
        if cfg.additive_pre is not None:  # the closed-form gradients are still w.r.t. qp, kp
            qw, kw = cfg.additive_pre(qw), cfg.additive_pre(kw)
        grads = _backward(
            cfg,
            qw,
            kw,
            v.to(w),
            mask,
            [p.to(w) for p in params],
            out,
            lse,
            dout.to(w),
            None if dlse is None else dlse.to(w),
            needs,
        )
        dq, dk, dv, dm, *dps = (None if g is None else g.to(dt) for g, dt in zip(grads, ctx.dtypes))
        return (dq, dk, dv, dm, None, *dps)


def _head_v(v: Tensor) -> Tensor:
    """Additive's v, (D,) or per head (H, D) -> broadcastable to (B, H, bq, bk, D)."""
    return v if v.dim() == 1 else v[:, None, None, :]  # (H, 1, 1, D)


def _fast_additive(spec: AttentionSpec) -> bool:
    """Additive's own pairwise and no score_mod: the closed-form tile path applies."""
    return type(spec.score).pairwise is Additive.pairwise and spec.score_mod is None


def _prepare(spec: AttentionSpec) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
    """Projected qp (B, H, L, D), kp (B, H, S, D), v (B, H, S, Ev) and pairwise params."""
    k = expand_kv(spec.key, spec.groups)  # (B, H, S, Ek)
    v = expand_kv(spec.value, spec.groups)  # (B, H, S, Ev)
    qp, kp = spec.score.project(spec.query, k)
    return qp, kp, v, list(spec.score.params())


def chunked_attention(
    spec: AttentionSpec,
    *,
    block_q: int | None = None,
    block_k: int | None = None,
    compile: bool | str = "auto",
) -> AttentionResult:
    """Run ``spec`` tile by tile (see the module docstring); blocks default to :func:`auto_blocks`.

    ``compile``: True compiles the additive score's tiles with ``torch.compile``
    (one fused loop for tanh, the dot with v and their gradients), False keeps
    them eager, "auto" compiles when the work B·H·L·S·D is large enough to
    repay the compilation. Compilation failing falls back to eager.
    """
    qp, kp, v, params = _prepare(spec)
    pair_features = 1 if spec.score.lowers_to_dot else qp.shape[-1]
    abq, abk = auto_blocks(spec.B, spec.H, spec.L, spec.S, pair_features)
    bq, bk = block_q or abq, block_k or abk
    if bq < 1 or bk < 1:
        raise ValueError(f"block_q and block_k must be >= 1, got {bq} and {bk}")
    work = torch.float64 if spec.dtype == torch.float64 else torch.float32
    seed = 0
    if spec.dropout_p > 0:
        gen = spec.generator
        seed = int(torch.randint(0, 2**62, (), generator=gen, device=gen.device if gen is not None else "cpu"))
    cfg = _Config(TileScorer(spec), bq, bk, spec.dropout_p, seed, work)
    if compile not in (True, False, "auto"):
        raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")
    if _fast_additive(spec):
        work_size = spec.B * spec.H * spec.L * spec.S * qp.shape[-1]
        use = compile is True or (compile == "auto" and work_size >= COMPILE_MIN_WORK)
        sep = separable_ok(qp, kp)  # exp(2(qp_i + kp_j)) = exp(2 qp_i) exp(2 kp_j) cannot overflow
        name = "sep" if sep else "exp"
        eager_pair, eager_grads = (_sep_pair, _sep_grads) if sep else (_exp_pair, _exp_grads)
        pair = COMPILED.get(f"{name}_pair", eager_pair) if use else eager_pair
        cfg.additive_pair = pair
        cfg.additive_grads = COMPILED.get(f"{name}_grads", eager_grads) if use else eager_grads
        cfg.additive_pre = _exp2 if sep else None

        def pairwise(qf_t: Tensor, kf_t: Tensor, v: Tensor) -> Tensor:
            return pair(qf_t, kf_t, _head_v(v))

        cfg.scorer.pairwise = pairwise
        if use and not (block_q or block_k):  # fused tiles: size by the scores, not the (.., D) tile
            cfg.block_k = min(spec.S, 256)
            cfg.block_q = max(16, min(spec.L, FUSED_PAIRS // max(1, spec.B * spec.H * cfg.block_k)))
    mask = spec.mask
    out, lse = _ChunkedFunction.apply(qp, kp, v, mask, cfg, *params)
    weights = None
    if spec.return_weights:
        weights = materialise_weights(spec, qp, kp, params, lse=lse, block_q=bq)
    return AttentionResult(output=out, weights=weights, lse=lse)


@register_backend
class ChunkedBackend(Backend):
    name = "chunked"
    priority = 50
    description = "online-softmax tiles for any score (additive, user scores) with a recomputing backward"
    notes = "memory O(B·H·(L+S)·D + B·H·block_q·block_k·D); weights recomputed from the log-sum-exp"
    softmax_only = True

    def not_supported_reasons(self, spec: AttentionSpec) -> list[str]:
        reasons = super().not_supported_reasons(spec)
        if torch.is_grad_enabled():
            for name, fn in (("score_mod", spec.score_mod), ("mask_mod", spec.mask_mod)):
                captured = captured_grad_tensors(fn) if fn is not None else []
                if captured:
                    reasons.append(
                        f"{name} captures tensors that require grad ({', '.join(captured)}); the recomputing "
                        "backward cannot reach them (math can)"
                    )
        return reasons

    def auto_declines(self, spec: AttentionSpec, allowed: tuple[str, ...] | None) -> str | None:
        if allowed is not None and "math" not in allowed:
            return None
        math_backend = BACKENDS.get("math")
        if math_backend is None:
            return None
        need = math_backend.memory_bytes(spec)
        if need > SMALL_FOR_MATH or math_backend.not_supported_reasons(spec):
            return None
        return (f"small call: math materialises only {format_bytes(need)} (<= {format_bytes(SMALL_FOR_MATH)}) "
                "and is faster there (force backend='chunked' to run it anyway)")

    def memory_bytes(self, spec: AttentionSpec) -> int:
        item = 8 if spec.dtype == torch.float64 else 4
        pair = 1
        if not spec.score.lowers_to_dot:
            ps = spec.score.params()
            pair = ps[0].shape[-1] if ps else spec.query.shape[-1]
        bq, bk = auto_blocks(spec.B, spec.H, spec.L, spec.S, pair)
        feats = max(spec.query.shape[-1], pair) + spec.value.shape[-1]
        linear = spec.B * spec.H * (spec.L + spec.S) * feats * item * 4
        tile = spec.B * spec.H * bq * bk * (pair + 4) * item * 3
        weights = spec.B * spec.H * spec.L * spec.S * item * 2 if spec.return_weights else 0
        return linear + tile + weights

    def forward(self, spec: AttentionSpec) -> AttentionResult:
        return chunked_attention(spec)
