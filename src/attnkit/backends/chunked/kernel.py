"""The generic online-softmax kernel behind the ``chunked`` backend: ANY score, memory linear in the sequence.

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
unchanged. The additive score itself takes the closed form of
:mod:`attnkit.backends.additive_tiles` (no tanh, closed-form gradients, optionally
compiled tiles that hold only their (B, H, bq, bk) scores).

Masks, causal (fully hidden key blocks are skipped), ``score_mod`` and ``mask_mod``
are applied per tile by ``reference.apply_masks``. Dropout draws each tile's
keep-mask from a seed taken once from ``generator`` (the same tile gets the same
mask in backward); the numbers differ from the math backend's, the distribution
does not.

Example::

    >>> from attnkit.backends.chunked import chunked_attention
    >>> result = chunked_attention(build_spec(q, k, v, score="additive", score_params=p), block_q=64)
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ...core.masks import mask_index
from ...core.reference import expand_kv
from ...core.spec import AttentionResult, AttentionSpec
from ..additive_tiles import AdditiveTiles, additive_tiles, head_v, is_plain_additive
from ..tiles import TileScorer, blocks, exp_safe_lse, work_dtype
from ..weights import materialise_weights
from .workers import run_split, worker_count

__all__ = ["chunked_attention", "auto_blocks", "TILE_ELEMENTS", "FUSED_PAIRS", "COMPILE_MIN_WORK", "BLOCKS_PER_WORKER",
           "BACKWARD_GROUPS"]

#: elements of the (B, H, block_q, block_k, D) pairwise intermediate one tile may hold.
TILE_ELEMENTS = 1 << 21
#: pairs (B·H·block_q·block_k) of one compiled additive tile, whose (.., D) intermediate
#: stays in registers: only the (B, H, block_q, block_k) scores are held (2 MiB).
FUSED_PAIRS = 1 << 19
#: compile="auto" compiles the additive tiles when B·H·L·S·D reaches this (compilation
#: takes seconds once per shape; below this the eager tiles finish sooner).
COMPILE_MIN_WORK = 1 << 27
#: the additive tiles (eager or compiled) run on torch's threads as workers (:mod:`.workers`), each taking
#: whole query blocks single-threaded; query blocks are made small enough that each worker gets this many.
BLOCKS_PER_WORKER = 4
#: backward's query blocks form this many groups per worker, taken by the workers as they finish one; each
#: group sums its own dK, dV (one (B, H, S, D) each), added in group order: the same numbers on every call
BACKWARD_GROUPS = 2


def auto_blocks(B: int, H: int, L: int, S: int, pair_features: int) -> tuple[int, int]:
    """(block_q, block_k): tiles of about TILE_ELEMENTS intermediate elements."""
    bk = max(1, min(S, 256 if pair_features == 1 else 64))  # S = 0: one empty key block
    bq = TILE_ELEMENTS // max(1, B * H * bk * pair_features)
    bq = max(16, min(L, bq))
    if bq == 16 and B * H * bq * bk * pair_features > TILE_ELEMENTS:
        bk = max(16, min(S, TILE_ELEMENTS // max(1, B * H * bq * pair_features)))
    return bq, bk


@dataclasses.dataclass
class _Config:
    scorer: TileScorer
    block_q: int
    block_k: int
    dropout_p: float
    seed: int
    work: torch.dtype
    #: the additive closed form (pair tile, its gradients, per-token features);
    #: None: the score's own pairwise, gradients by autograd on the recomputed tile.
    additive: AdditiveTiles | None = None
    #: threads that run whole query blocks side by side (:mod:`.workers`); 1: this thread runs them all
    workers: int = 1


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
    out = torch.empty(B, H, L, v.shape[-1], dtype=cfg.work, device=qp.device)
    lse = torch.empty(B, H, L, dtype=cfg.work, device=qp.device)
    rows = list(blocks(L, cfg.block_q))  # each block writes its own rows: every block is a group
    run_split(cfg.workers, rows, lambda share: _forward_rows(cfg, qp, kp, v, mask, params, out, lse, share),
              groups=len(rows))
    return out, lse


def _forward_rows(
    cfg: _Config, qp: Tensor, kp: Tensor, v: Tensor, mask: Tensor | None, params: Sequence[Tensor],
    out: Tensor, lse: Tensor, rows: Sequence[tuple[int, int]],
) -> None:
    """Write out[:, :, q0:q1] and lse[:, :, q0:q1] for each query block (q0, q1) of ``rows``."""
    B, H = qp.shape[:2]
    S, Ev = kp.shape[-2], v.shape[-1]
    sc = cfg.scorer
    for q0, q1 in rows:
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
        ok = l != 0  # l = 0: no allowed key (output 0); a NaN l (a NaN input) stays NaN
        out[:, :, q0:q1] = torch.where(ok, acc / torch.where(ok, l, torch.ones_like(l)), torch.zeros_like(acc))
        lse[:, :, q0:q1] = torch.where(ok, m_safe + torch.log(l), torch.full_like(l, float("-inf"))).squeeze(-1)


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
    """Gradients (dqp, dkp, dv, dmask, *dparams), recomputing tiles from lse.

    dqp rows belong to one query block each; dkp, dv, dmask and dparams sum over every query
    block, so each worker sums its own blocks and the workers' sums are added in worker order.
    """
    need_q, need_k, need_v, need_mask, *need_p = needs
    L = qp.shape[2]
    D = (dout * out).sum(-1, keepdim=True)  # (B, H, L, 1)
    if dlse is not None:
        D = D - dlse.unsqueeze(-1)  # dS = P (dP - D + dlse)
    lse_safe = exp_safe_lse(lse).unsqueeze(-1)  # (B, H, L, 1)
    dqp = torch.zeros_like(qp) if need_q else None

    def rows_part(rows: Sequence[tuple[int, int]]) -> list[Tensor | None]:
        part: list[Tensor | None] = [
            torch.zeros_like(kp) if need_k else None,
            torch.zeros_like(v) if need_v else None,
            torch.zeros(mask.shape, dtype=cfg.work, device=mask.device) if need_mask and mask is not None else None,
            *[torch.zeros_like(p) if n else None for p, n in zip(params, need_p)],
        ]
        _backward_rows(cfg, qp, kp, v, mask, params, dout, D, lse_safe, needs, rows, dqp, part)
        return part

    parts = run_split(cfg.workers, list(blocks(L, cfg.block_q)), rows_part, groups=BACKWARD_GROUPS * cfg.workers)
    total = parts[0]
    for part in parts[1:]:
        total = [None if a is None else a + b for a, b in zip(total, part)]
    dkp, dv, dmask, *dparams = total
    return (dqp, dkp, dv, dmask, *dparams)


def _backward_rows(
    cfg: _Config, qp: Tensor, kp: Tensor, v: Tensor, mask: Tensor | None, params: Sequence[Tensor],
    dout: Tensor, D: Tensor, lse_safe: Tensor, needs: Sequence[bool], rows: Sequence[tuple[int, int]],
    dqp: Tensor | None, part: list[Tensor | None],
) -> None:
    """Add the gradients of the query blocks ``rows``: to dqp's rows, and to ``part`` = [dkp, dv, dmask, *dparams]."""
    need_q, need_k, need_v, need_mask, *need_p = needs
    S = kp.shape[-2]
    sc = cfg.scorer
    dkp, dv, dmask, *dparams = part
    p_leaves = [p.detach().requires_grad_(n) for p, n in zip(params, need_p)]
    for q0, q1 in rows:
        q_t = qp[:, :, q0:q1].detach().requires_grad_(need_q)
        do_t = dout[:, :, q0:q1]  # (B, H, bq, Ev)
        for k0, k1 in blocks(S, cfg.block_k):
            if not sc.visible(q0, q1, k0):
                break
            k_t = kp[:, :, k0:k1].detach().requires_grad_(need_k)
            m_t = sc.mask_tile(mask, q0, q1, k0, k1)
            if dmask is not None:
                m_t = m_t.detach().requires_grad_(True)
            if cfg.additive is not None:
                (v_par,) = params  # q_t, k_t hold the per-token features (cfg.additive.pre)
                pair = cfg.additive.pair(q_t.detach(), k_t.detach(), head_v(v_par))  # (B, H, bq, bk)
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
            if cfg.additive is not None:
                gq, gk, gv = cfg.additive.grads(q_t.detach(), k_t.detach(), head_v(v_par), ds * sc.scale)
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


class _ChunkedFunction(torch.autograd.Function):
    """(qp, kp, v, mask, cfg, *params) -> (output, lse), backward by recomputation."""

    @staticmethod
    def forward(ctx, qp, kp, v, mask, cfg, *params):  # type: ignore[override]
        w = cfg.work
        qw, kw, vw = qp.to(w), kp.to(w), v.to(w)
        pw = [p.to(w) for p in params]
        if cfg.additive is not None and cfg.additive.pre is not None:  # tiles read per-token features
            qw, kw = cfg.additive.pre(qw), cfg.additive.pre(kw)
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
        if cfg.additive is not None and cfg.additive.pre is not None:  # gradients still w.r.t. qp, kp
            qw, kw = cfg.additive.pre(qw), cfg.additive.pre(kw)
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

    The additive tiles, eager or compiled, run their query blocks side by side on
    ``torch.get_num_threads()`` workers of one thread each (:mod:`.workers`): parallel across
    tiles, not inside each small operation (compiled tiles are built single-threaded with
    inductor's C++ wrapper, whose call releases the GIL).
    """
    qp, kp, v, params = _prepare(spec)
    pair_features = 1 if spec.score.lowers_to_dot else qp.shape[-1]
    abq, abk = auto_blocks(spec.B, spec.H, spec.L, spec.S, pair_features)
    bq, bk = block_q or abq, block_k or abk
    if bq < 1 or bk < 1:
        raise ValueError(f"block_q and block_k must be >= 1, got {bq} and {bk}")
    if compile not in (True, False, "auto"):
        raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")
    seed = 0
    if spec.dropout_p > 0:
        gen = spec.generator
        seed = int(torch.randint(0, 2**62, (), generator=gen, device=gen.device if gen is not None else "cpu"))
    additive, tile_q, tile_k, workers = None, bq, bk, 1
    if is_plain_additive(spec.score) and spec.score_mod is None:
        work_size = spec.B * spec.H * spec.L * spec.S * qp.shape[-1]
        use = compile is True or (compile == "auto" and work_size >= COMPILE_MIN_WORK)
        if use and not (block_q or block_k):  # fused tiles: size by the scores, not the (.., D) tile
            tile_k = min(spec.S, 256)
            tile_q = max(16, min(spec.L, FUSED_PAIRS // max(1, spec.B * spec.H * tile_k)))
        # tiles run on the workers, whole query blocks each, instead of every small op split over threads:
        # ATen ops release the GIL, and the compiled tiles are built single-threaded with inductor's C++
        # wrapper, whose call releases it too (additive_tiles.COMPILED), so the workers run side by side
        workers = worker_count()
        if workers > 1 and not block_q:  # enough query blocks for the workers to share
            tile_q = max(16, min(tile_q, -(-spec.L // (BLOCKS_PER_WORKER * workers))))
        workers = min(workers, -(-spec.L // tile_q)) if spec.L else 1
        additive = additive_tiles(qp, kp, compiled=use, threads=1 if workers > 1 else None)
    scorer = TileScorer(spec, additive.pairwise if additive is not None else None)
    cfg = _Config(scorer, tile_q, tile_k, spec.dropout_p, seed, work_dtype(spec.dtype), additive, workers)
    mask = spec.mask
    out, lse = _ChunkedFunction.apply(qp, kp, v, mask, cfg, *params)
    weights = None
    if spec.return_weights:
        weights = materialise_weights(spec, qp, kp, params, lse=lse, block_q=bq)
    return AttentionResult(output=out, weights=weights, lse=lse)

