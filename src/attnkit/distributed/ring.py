"""Ring attention over any score: each rank holds a shard of the sequence, K/V blocks travel the ring.

Liu, Zaharia & Abbeel 2023, Ring Attention with Blockwise Transformers (arXiv:2310.01889), with the
load-balanced zigzag layout (Brandon et al. 2023, Striped Attention, arXiv:2311.09431; the zigzag
form of zhuzilin/ring-flash-attention). Rank r holds queries Q_r and keys/values K_r, V_r; in P
steps it sees every K_j, V_j (sent r -> r+1 with ``batch_isend_irecv`` while the current block is
computed) and merges the partial results by their log-sum-exp (Milakov & Gimelshein 2018,
arXiv:1805.02867), in float32:

``lse = logaddexp(lse, lse_j)``,  ``o = exp(lse_old - lse) · o + exp(lse_j - lse) · o_j``,

with ``exp(-inf - x) = 0`` written out, so a query row with no allowed key keeps o = 0, lse = -inf
(never NaN from ``-inf - -inf``). The merge does not care how the scores were made. Each block
``(o_j, lse_j)`` comes from:

* the plain dot scores (``dot``, ``scaled_dot``; no dropout, as many key heads as query heads, CPU):
  torch SDPA's fused kernel with its log-sum-exp (:mod:`attnkit.backends.sdpa_lse`);
* every other call: what attnkit's dispatch picks among the backends that return a differentiable
  log-sum-exp (``chunked`` for additive and user scores and large blocks, ``math`` for small ones).

Backward (its own ``autograd.Function``): K/V travel the ring again with their gradient
accumulators, which arrive back at rank j after P exchanges. Nothing of size (L, S) is kept
between blocks. On the fused path each block's gradients come from the kernel's FlashAttention-2
backward given the merged (O, lse) (as in ring-flash-attention); otherwise the block is recomputed
with autograd from the inputs and given the gradients of the merge,

``∂/∂o_j = w_j · dO``,  ``∂/∂lse_j = w_j · (dO · (o_j - o))``,  ``w_j = exp(lse_j - lse)``,

so every backend's own backward (chunked's recomputing backward included) runs unchanged, at the
price of one more forward of the block.

Score tensors (additive's ``w_q``, ``w_k``, ``v``; general's ``weight``) get this rank's share of
their gradient: the gradient of the loss of this rank's queries, which includes their use on the
keys that visited. Summed over the group (``torch.distributed.all_reduce``, or DDP / the
``average_gradients`` of :mod:`attnkit.distributed.context` for every replicated parameter) it is
the single-process gradient. The gradients of q, k and v are exact per shard.

Shape legend: B batch, H query heads, Hk key/value heads, L = this rank's queries, S = its keys,
E features, Ev value features; every tensor is this rank's shard (see :mod:`.layout`).

Example (on each of P ranks)::

    >>> q, k, v = (shard_sequence(t, 2) for t in (q_full, k_full, v_full))   # (B, H, L/P, E)
    >>> o = ring_attention(q, k, v, score="additive", score_params=p, causal=True)
    >>> torch.allclose(unshard_sequence(o, 2), attention(q_full, k_full, v_full, score="additive",
    ...                score_params=p, causal=True), atol=1e-5)
    True
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..backends import sdpa_lse
from ..backends.dispatch import allowed_backends, restrict_backends, select_backend
from ..core.scores import Cosine, Score, get_score
from ..functional.attention import build_spec
from .group import RingComm, agree_across_ranks, current_stats, require_collective, resolve_group, shape_of
from .layout import check_layout, chunk_ids

__all__ = ["ring_attention", "LSE_BACKENDS", "merge_partial"]

#: backends whose AttentionResult carries a log-sum-exp that autograd can differentiate
LSE_BACKENDS = ("chunked", "math", "reference")

#: layout name -> the code agree_across_ranks compares
LAYOUT_CODES = {"zigzag": 0, "contiguous": 1}


def _safe_exp(a: Tensor, b: Tensor) -> Tensor:
    """exp(a - b), 0 where a = -inf (b = -inf too is 0, never NaN); NaN stays NaN."""
    return torch.where(a == float("-inf"), torch.zeros_like(a), torch.exp(a - b))


def merge_partial(out: Tensor, lse: Tensor, out_j: Tensor, lse_j: Tensor) -> tuple[Tensor, Tensor]:
    """Merge partial attention results over disjoint key sets: out (.., L, Ev), lse (.., L).

    ``lse' = logaddexp(lse, lse_j)``, ``out' = exp(lse - lse') out + exp(lse_j - lse') out_j``;
    rows with no key in either part stay (0, -inf).
    """
    new = torch.logaddexp(lse, lse_j)  # (.., L); logaddexp(-inf, -inf) = -inf
    a = _safe_exp(lse, new).unsqueeze(-1)  # (.., L, 1)
    b = _safe_exp(lse_j, new).unsqueeze(-1)
    return out * a + out_j.to(out.dtype) * b, new


@dataclasses.dataclass
class _Cfg:
    score: Score
    names: tuple[str, ...]  # attributes of ``score`` passed to the Function as tensors
    scale: Optional[float]
    causal: bool
    layout: str
    P: int
    rank: int
    comm: Optional[RingComm]
    dropout_p: float
    seed: int
    mask_bool: bool
    backends: tuple[str, ...]
    work: torch.dtype
    fused: bool  # blocks on torch SDPA's CPU kernel with its lse (backends.sdpa_lse), else dispatch
    scale_f: float

    def score_with(self, tensors: Sequence[Tensor]) -> Score:
        if not self.names:
            return self.score
        sc = copy.copy(self.score)
        for n, t in zip(self.names, tensors):
            setattr(sc, n, t)
        return sc

    def pieces(self, src: int, Lq: int, Sk: int) -> list[tuple[int, int, int, int, bool]]:
        """(q0, q1, k0, k1, causal) blocks of this rank's queries against the keys of rank ``src``."""
        if not self.causal:
            return [(0, Lq, 0, Sk, False)]
        qc, kc = chunk_ids(self.layout, self.rank, self.P), chunk_ids(self.layout, src, self.P)
        if qc == kc:  # own keys, chunks ascending: local top-left causal is the global one
            return [(0, Lq, 0, Sk, True)]
        lc, sc = Lq // len(qc), Sk // len(kc)
        out: list[tuple[int, int, int, int, bool]] = []
        for i, c in enumerate(qc):
            n = sum(1 for j in kc if j < c)  # keys are ascending: the visible chunks are a prefix
            if n == 0:
                continue
            if out and out[-1][3] == n * sc and out[-1][1] == i * lc:
                out[-1] = (out[-1][0], (i + 1) * lc, 0, n * sc, False)
            else:
                out.append((i * lc, (i + 1) * lc, 0, n * sc, False))
        return out

    def generator(self, device: torch.device, src: int, q0: int, k0: int) -> Optional[torch.Generator]:
        """Dropout's generator for one block: the same seed in forward and in backward's recomputation."""
        if self.dropout_p == 0:
            return None
        g = torch.Generator(device=device)
        g.manual_seed((self.seed * 1_000_003 + src * 65_537 + q0 * 257 + k0) % (2**63 - 1))
        return g


def _block(cfg: _Cfg, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], causal: bool,
           tensors: Sequence[Tensor], gen: Optional[torch.Generator]) -> tuple[Tensor, Tensor]:
    """(output (B, H, lq, Ev), lse (B, H, lq)) of one block, on the backend dispatch picks."""
    spec = build_spec(q, k, v, score=cfg.score_with(tensors), mask=mask, causal=causal, scale=cfg.scale,
                      dropout_p=cfg.dropout_p, generator=gen)
    with restrict_backends(*cfg.backends):
        backend = select_backend(spec)
    res = backend.forward(spec)
    assert res.lse is not None, f"backend {backend.name!r} returned no log-sum-exp"
    return res.output, res.lse


def _wire(mask: Optional[Tensor]) -> list[Tensor]:
    if mask is None:
        return []
    return [mask.to(torch.uint8) if mask.dtype == torch.bool else mask.contiguous()]


def _unwire(cfg: _Cfg, kv: list[Tensor]) -> Optional[Tensor]:
    if len(kv) < 3:
        return None
    return kv[2].bool() if cfg.mask_bool else kv[2]


def _timed(t0: float) -> None:
    st = current_stats()
    if st is not None:
        st.compute_s += time.perf_counter() - t0


def _forward(cfg: _Cfg, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor],
             tensors: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    B, H, Lq, _ = q.shape
    out = torch.zeros(B, H, Lq, v.shape[-1], dtype=cfg.work, device=q.device)  # (B, H, L, Ev)
    lse = torch.full((B, H, Lq), float("-inf"), dtype=cfg.work, device=q.device)  # (B, H, L)
    kv = [k, v, *_wire(mask)]
    for step in range(cfg.P):
        src = (cfg.rank - step) % cfg.P
        pending = cfg.comm.exchange(kv) if step + 1 < cfg.P and cfg.comm is not None else None
        t0 = time.perf_counter()
        kb, vb, mb = kv[0], kv[1], _unwire(cfg, kv)
        for q0, q1, k0, k1, causal in cfg.pieces(src, Lq, kb.shape[2]):
            qs, ks, vs, ms = q[:, :, q0:q1], kb[:, :, k0:k1], vb[:, :, k0:k1], None if mb is None else mb[..., k0:k1]
            if cfg.fused:
                o_j, l_j = sdpa_lse.forward(qs.contiguous(), ks.contiguous(), vs.contiguous(), ms, causal, cfg.scale_f)
            else:
                o_j, l_j = _block(cfg, qs, ks, vs, ms, causal, tensors, cfg.generator(q.device, src, q0, k0))
            out[:, :, q0:q1], lse[:, :, q0:q1] = merge_partial(out[:, :, q0:q1], lse[:, :, q0:q1], o_j,
                                                               l_j.to(cfg.work))
        _timed(t0)
        if pending is not None:
            kv = pending.wait()
    return out, lse


def _block_grads(cfg: _Cfg, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], causal: bool,
                 tensors: Sequence[Tensor], out: Tensor, lse: Tensor, dout: Tensor, needs: Sequence[bool],
                 gen: Optional[torch.Generator]) -> tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor],
                                                          list[Optional[Tensor]]]:
    """Gradients (dq, dk, dv, [d score tensors]) of one block given the merged ``out``, ``lse`` (module docstring)."""
    need_q, need_k, need_v, *need_t = needs
    if cfg.fused:  # the kernel's backward reads the merged (out, lse): no recomputed forward
        gq, gk, gv = sdpa_lse.backward(dout.to(q.dtype), q.contiguous(), k.contiguous(), v.contiguous(),
                                       out.to(q.dtype), lse, mask, causal, cfg.scale_f)
        return gq, gk, gv, []
    w = cfg.work
    with torch.enable_grad():
        ql = q.detach().requires_grad_(need_q)
        kl = k.detach().requires_grad_(need_k)
        vl = v.detach().requires_grad_(need_v)
        tl = [t.detach().requires_grad_(n) for t, n in zip(tensors, need_t)]
        o_j, l_j = _block(cfg, ql, kl, vl, mask, causal, tl, gen)
        leaves = [ql, kl, vl, *tl]
        inputs = [x for x in leaves if x.requires_grad]
        if not inputs:
            return None, None, None, [None] * len(tl)
        wj = _safe_exp(l_j.detach().to(w), lse)  # (B, H, lq)
        g_out = (wj.unsqueeze(-1) * dout).to(o_j.dtype)
        g_lse = wj * (dout * (o_j.detach().to(w) - out)).sum(-1)
        grads = iter(torch.autograd.grad((o_j, l_j), inputs, (g_out, g_lse.to(l_j.dtype)), allow_unused=True))
    got = [next(grads) if x.requires_grad else None for x in leaves]
    return got[0], got[1], got[2], got[3:]


def _backward(cfg: _Cfg, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], tensors: Sequence[Tensor],
              out: Tensor, lse: Tensor, dout: Tensor, needs: Sequence[bool]) -> list[Optional[Tensor]]:
    need_q, need_k, need_v, *need_t = needs
    need_kv = need_k or need_v
    w = cfg.work
    dq = torch.zeros(q.shape, dtype=w, device=q.device) if need_q else None
    dts = [torch.zeros(t.shape, dtype=w, device=t.device) if n else None for t, n in zip(tensors, need_t)]
    Lq = q.shape[2]
    kv = [k, v, *_wire(mask)]
    dkv_pending = None
    dk_b = dv_b = None
    for step in range(cfg.P):
        src = (cfg.rank - step) % cfg.P
        pending = cfg.comm.exchange(kv) if step + 1 < cfg.P and cfg.comm is not None else None
        t0 = time.perf_counter()
        kb, vb, mb = kv[0], kv[1], _unwire(cfg, kv)
        dk_b = torch.zeros(kb.shape, dtype=w, device=kb.device) if need_kv else None
        dv_b = torch.zeros(vb.shape, dtype=w, device=vb.device) if need_kv else None
        for q0, q1, k0, k1, causal in cfg.pieces(src, Lq, kb.shape[2]):
            gq, gk, gv, gts = _block_grads(cfg, q[:, :, q0:q1], kb[:, :, k0:k1], vb[:, :, k0:k1],
                                           None if mb is None else mb[..., k0:k1], causal, tensors,
                                           out[:, :, q0:q1], lse[:, :, q0:q1], dout[:, :, q0:q1], needs,
                                           cfg.generator(q.device, src, q0, k0))
            for g, acc, a, b in ((gq, dq, q0, q1), (gk, dk_b, k0, k1), (gv, dv_b, k0, k1)):
                if g is not None and acc is not None:
                    acc[:, :, a:b] += g.to(w)
            for g, acc in zip(gts, dts):
                if g is not None and acc is not None:
                    acc += g.to(w)
        _timed(t0)
        if need_kv and cfg.comm is not None:
            if dkv_pending is not None:  # the accumulators of this block from the ranks it visited before
                rk, rv = dkv_pending.wait()
                dk_b += rk
                dv_b += rv
            dkv_pending = cfg.comm.exchange([dk_b, dv_b])
        if pending is not None:
            kv = pending.wait()
    dk = dv = None
    if need_kv:
        dk, dv = dkv_pending.wait() if dkv_pending is not None else (dk_b, dv_b)
    return [dq, dk, dv, *dts]


class _RingFunction(torch.autograd.Function):
    """(cfg, q, k, v, mask, *score tensors) -> this rank's output (B, H, L, Ev)."""

    @staticmethod
    def forward(ctx, cfg, q, k, v, mask, *tensors):  # type: ignore[override]
        out, lse = _forward(cfg, q, k, v, mask, tensors)
        ctx.cfg = cfg
        ctx.dtypes = (q.dtype, k.dtype, v.dtype, *[t.dtype for t in tensors])
        ctx.save_for_backward(q, k, v, mask, out, lse, *tensors)
        ctx.set_materialize_grads(False)
        return out.to(q.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):  # type: ignore[override]
        q, k, v, mask, out, lse, *tensors = ctx.saved_tensors
        cfg: _Cfg = ctx.cfg
        dout = torch.zeros_like(out) if dout is None else dout.to(cfg.work)
        needs = [ctx.needs_input_grad[1], ctx.needs_input_grad[2], ctx.needs_input_grad[3],
                 *ctx.needs_input_grad[5:]]
        grads = _backward(cfg, q, k, v, mask, tensors, out, lse, dout, needs)
        dq, dk, dv, *dts = (None if g is None else g.to(dt) for g, dt in zip(grads, ctx.dtypes))
        return (None, dq, dk, dv, None, *dts)


def _key_mask(mask: Any, B: int, H: int, S: int) -> Optional[Tensor]:
    """The key mask as (B|1, H|1, 1, S), or a ValueError naming the shapes that work."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a bool or float Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"mask has dtype {mask.dtype}; pass a bool mask (True = the key may be attended) or a "
                        "float bias per key")
    if mask.is_floating_point() and mask.requires_grad:
        raise ValueError("ring_attention: a float mask that requires grad is not supported; pass mask.detach()")
    m = mask
    if m.dim() == 1:
        m = m[None, None, None, :]  # (1, 1, 1, S)
    elif m.dim() == 2:
        m = m[:, None, None, :]  # (B, 1, 1, S)
    ok = m.dim() == 4 and m.shape[2] == 1 and m.shape[3] == S and m.shape[0] in (1, B) and m.shape[1] in (1, H)
    if not ok:
        raise ValueError(
            f"ring_attention: mask has shape {tuple(mask.shape)}; it is a mask over this rank's keys: (S,), "
            f"(B, S) = ({B}, {S}) or (B, H, 1, S), cut by shard_sequence like the keys (a per-query (L, S) mask "
            "would need every rank's queries; use causal=True for the causal mask)"
        )
    return m.contiguous()


def _prepare(what: str, P: int, rank: int, q: Any, k: Any, v: Any, score: Any, score_params: Any, causal: Any,
             layout: Any, mask: Any, dropout_p: Any, scale: Any, backend: Any) -> tuple:
    """This rank's checks of :func:`ring_attention`'s arguments (no collective): the 4-D shards, the score,
    the key mask (B|1, H|1, 1, S), causal, the block backends and whether the fused path runs."""
    check_layout(layout)
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}: {name} must be a torch.Tensor, got {type(t).__name__}")
    three_d = q.dim() == 3
    if three_d and k.dim() == 3 and v.dim() == 3:
        q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)  # (B, 1, N, E)
    if causal is True or causal == "top_left":
        causal_b = True
    elif causal is False or causal is None:
        causal_b = False
    else:
        raise ValueError(f"{what}: causal must be True, False or 'top_left', got {causal!r} (bottom-right "
                         "alignment is cached decoding, which runs on one process)")
    sc = get_score(score, **dict(score_params or {}))
    if not sc.uses_keys:
        raise ValueError(f"{what}: score {sc.name!r} reads key positions, not keys; it cannot be split "
                         "across ranks (run it with attention() on one process)")
    if isinstance(sc, Cosine) and isinstance(sc.beta, Tensor) and sc.beta.dim() > 0:
        raise ValueError(f"{what}: a per-query cosine beta {tuple(sc.beta.shape)} is not supported; pass a "
                         "number or a 0-d tensor")
    m4 = _key_mask(mask, q.shape[0] if q.dim() == 4 else 0, q.shape[1] if q.dim() == 4 else 0,
                   k.shape[2] if k.dim() == 4 else -1)
    build_spec(q, k, v, score=sc, mask=m4, scale=scale, dropout_p=dropout_p)  # every local check, no compute
    Lq, Sk = q.shape[2], k.shape[2]
    n_local = len(chunk_ids(layout, rank, P))
    for name, n in (("q", Lq), ("k", Sk)):
        if n % n_local or n == 0:
            raise ValueError(f"{what}: {name} holds {n} positions; a {layout!r} shard holds {n_local} equal "
                             f"non-empty chunks, so its length must be a positive multiple of {n_local} (cut the "
                             "full tensors with shard_sequence)")
    if causal_b and Lq != Sk:
        raise ValueError(f"{what}: causal=True needs as many queries as keys per rank (self-attention), got "
                         f"q {Lq} and k {Sk} positions")
    allowed = allowed_backends()
    fused = (backend in ("auto", "sdpa") and (allowed is None or "sdpa" in allowed)
             and sdpa_lse.takes(q, k, sc, float(dropout_p)))
    if backend == "sdpa" and not fused:
        raise ValueError(f"{what}: backend='sdpa' runs the plain dot scores ('dot', 'scaled_dot') on CPU without "
                         f"dropout, with as many key heads as query heads, in {[str(d) for d in sdpa_lse.DTYPES]}; "
                         "pass backend='auto'")
    if backend not in ("auto", "sdpa"):
        if backend not in LSE_BACKENDS:
            raise ValueError(f"{what}: backend={backend!r} returns no log-sum-exp to merge; pass 'auto', 'sdpa' "
                             f"or one of {LSE_BACKENDS}")
        names: tuple[str, ...] = (backend,)
    else:
        names = tuple(n for n in LSE_BACKENDS if allowed is None or n in allowed)
    if not names and not fused:
        raise ValueError(f"{what}: restrict_backends{allowed} leaves none of {LSE_BACKENDS}, the backends that "
                         "return a log-sum-exp to merge; allow 'chunked' or 'math'")
    return three_d, q, k, v, sc, m4, causal_b, names, fused


def ring_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    score: str | Score = "scaled_dot",
    score_params: Mapping[str, Any] | None = None,
    causal: bool | str = False,
    layout: str = "zigzag",
    mask: Optional[Tensor] = None,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
    group: Optional[dist.ProcessGroup] = None,
    backend: str = "auto",
) -> Tensor:
    """This rank's shard of ``attention(q_full, k_full, v_full, ...)`` (see the module docstring).

    Args:
        q: (B, H, L, E) this rank's queries (3-D (B, L, E): one head), cut by ``shard_sequence``.
        k: (B, Hk, S, E) this rank's keys (Hk divides H).
        v: (B, Hk, S, Ev) this rank's values.
        score: any score of :mod:`attnkit.core.scores` (a name, or an instance), user scores included;
            not ``location`` (its weights index key positions) nor a per-query cosine ``beta``.
        score_params: the tensors of a score given by name.
        causal: True / "top_left": query i sees keys j <= i in global positions (needs L == S).
        layout: "zigzag" (causal load balance) or "contiguous", as the shards were cut.
        mask: this rank's key mask, (S,), (B, S) or (B, H, 1, S): bool (True = may be attended) or a float
            bias; it travels the ring with the keys.
        dropout_p: dropout on the weights (reproducible per block in the backward).
        scale: None = the score's default.
        group: the context-parallel process group (None: the world).
        backend: "auto": the plain dot scores on torch SDPA's CPU kernel with its log-sum-exp
            (:mod:`attnkit.backends.sdpa_lse`: its backward reads the merged output, no recomputation),
            every other call through dispatch among :data:`LSE_BACKENDS`; or "sdpa" or one of those by name.

    Returns: (B, H, L, Ev) (3-D in, (B, L, Ev) out).
    """
    what = "ring_attention"
    group, P, rank = resolve_group(group, what)
    require_collective(group, "isend_irecv", what)
    error: Optional[Exception] = None
    try:  # every local check; a refusal on one rank is announced to all by agree_across_ranks
        prep = _prepare(what, P, rank, q, k, v, score, score_params, causal, layout, mask, dropout_p, scale, backend)
    except (ValueError, TypeError) as e:
        error, prep = e, None
    dtypes = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    code = [dtypes.index(t.dtype) if isinstance(t, Tensor) and t.dtype in dtypes else 9 for t in (q, k, v)]
    lay = LAYOUT_CODES.get(layout, 9) if isinstance(layout, str) else 9
    agree_across_ranks(group, what, {
        "q": shape_of(q), "k": shape_of(k), "v": shape_of(v), "mask": shape_of(mask),
        "dtypes/causal/layout": (*code, int(bool(causal)), lay),
    }, error=error)
    assert prep is not None
    three_d, q, k, v, sc, m4, causal_b, names, fused = prep
    names_t = tuple(n for n, t in vars(sc).items() if isinstance(t, Tensor))
    tensors = [getattr(sc, n) for n in names_t]
    seed = int(torch.randint(0, 2**62, ())) if dropout_p > 0 else 0
    cfg = _Cfg(sc, names_t, scale, causal_b, layout, P, rank, RingComm(group, P, rank) if P > 1 else None,
               float(dropout_p), seed, m4 is not None and m4.dtype == torch.bool, names,
               torch.float64 if q.dtype == torch.float64 else torch.float32, fused,
               float(scale) if scale is not None else sc.default_scale(q, k))
    out = _RingFunction.apply(cfg, q, k, v, m4, *tensors)  # (B, H, L, Ev)
    return out.squeeze(1) if three_d else out
