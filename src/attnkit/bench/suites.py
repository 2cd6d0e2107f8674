"""The suites of ``attnkit bench``: each of our implementations beside the peer it replaces.

* ``dot``: ``attnkit.attention`` (scaled dot product, ``softmax(q kᵀ / √E) v``, Vaswani et al.
  2017, arXiv:1706.03762) against ``torch.nn.functional.scaled_dot_product_attention``.
  B·N = 4096 tokens, H=8/E=64 and H=4/E=128, N = 256..4096.
* ``mha``: ``attnkit.nn.MultiheadAttention`` against ``torch.nn.MultiheadAttention`` with the
  same weights, need_weights False and True.
* ``additive``: ``attention(score="additive")`` (Bahdanau et al. 2015, arXiv:1409.0473,
  ``softmax(vᵀ tanh(W_q q + W_k k)) v``) against the Keras/OpenNMT formula that materialises
  (B, H, L, S, D) (``naive_eager``), its ``torch.compile`` (``naive_compile``) and the same
  tile loop differentiated by plain autograd (``chunked_autograd``). B=4, H=1, D=128,
  L=S=256..1024, plus L=S=8192 (one call) where the naive formula cannot run.

A configuration is a JSON-able dict ``{"suite", "shape", "mode"[, "impl", "warmup", "repeats"]}``
(it crosses into a fresh process); :func:`build_step` turns it into a zero-argument call,
:func:`make_row` turns the measurements of ours and a peer into one result row.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..functional import attention
from ..nn import MultiheadAttention
from .timing import Summary

__all__ = ["OURS", "PEERS", "SUITES", "build_step", "configs", "make_row", "needed_bytes", "shape_str"]

SUITES = ("dot", "mha", "additive")
#: suite -> the peers timed beside ours
PEERS = {
    "dot": ("torch_sdpa",),
    "mha": ("torch_mha",),
    "additive": ("naive_eager", "naive_compile", "chunked_autograd"),
}
#: suite -> our implementation's name in the rows
OURS = {"dot": "attnkit", "mha": "attnkit_mha", "additive": "attnkit_additive"}


# ---------------------------------------------------------------- peers written out


def naive_additive(q, k, v, w_q, w_k, va):
    """Keras/OpenNMT/d2l: ``softmax(vᵀ tanh(W_q q + W_k k)) v`` through a (B, H, L, S, D) tensor."""
    qp, kp = q @ w_q.T, k @ w_k.T  # (B, H, L, D), (B, H, S, D)
    s = torch.tanh(qp.unsqueeze(-2) + kp.unsqueeze(-3)) @ va  # (B, H, L, S, D) -> (B, H, L, S)
    return torch.softmax(s, dim=-1) @ v


def chunked_autograd(q, k, v, w_q, w_k, va, block_q=64, block_k=64):
    """The online-softmax tile loop with plain autograd (it stores every tile for backward)."""
    qp, kp = q @ w_q.T, k @ w_k.T
    outs = []
    for q0 in range(0, qp.shape[-2], block_q):
        qt = qp[:, :, q0:q0 + block_q]
        m = torch.full(qt.shape[:-1] + (1,), float("-inf"))
        l_sum = torch.zeros_like(m)
        acc = torch.zeros(qt.shape[:-1] + (v.shape[-1],))
        for k0 in range(0, kp.shape[-2], block_k):
            s = torch.tanh(qt.unsqueeze(-2) + kp[:, :, k0:k0 + block_k].unsqueeze(-3)) @ va  # (B, H, bq, bk)
            m_new = torch.maximum(m, s.amax(-1, keepdim=True))
            p = torch.exp(s - m_new)
            alpha = torch.exp(m - m_new)
            l_sum = l_sum * alpha + p.sum(-1, keepdim=True)
            acc = acc * alpha + p @ v[:, :, k0:k0 + block_k]
            m = m_new
        outs.append(acc / l_sum)
    return torch.cat(outs, dim=2)  # (B, H, L, Ev)


#: torch.compile'd peers, compiled once per process
_COMPILED: dict[str, Any] = {}


# ---------------------------------------------------------------- configurations


def _finish(fn: Callable[[], Any], bwd: bool) -> Callable[[], Any]:
    """``fn`` under no_grad (forward), or ``fn`` and a backward of ones (forward + backward)."""
    if not bwd:
        def fwd() -> Any:
            with torch.no_grad():
                return fn()
        return fwd

    def fwd_bwd() -> Any:
        out = fn()
        out = out[0] if isinstance(out, tuple) else out
        out.backward(torch.ones_like(out))
        return out

    return fwd_bwd


def build_step(cfg: dict[str, Any]) -> Callable[[], Any]:
    """A zero-argument call running one configuration (forward, or forward + backward)."""
    impl, sh, bwd = cfg["impl"], cfg["shape"], cfg["mode"] == "fwd+bwd"
    g = torch.Generator().manual_seed(0)

    def t(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).requires_grad_(bwd)

    if cfg["suite"] == "dot":
        B, H, N, E = sh["B"], sh["H"], sh["N"], sh["E"]
        q, k, v = t(B, H, N, E), t(B, H, N, E), t(B, H, N, E)
        if impl == "attnkit":
            return _finish(lambda: attention(q, k, v), bwd)
        if impl == "torch_sdpa":
            return _finish(lambda: F.scaled_dot_product_attention(q, k, v), bwd)
    if cfg["suite"] == "mha":
        B, H, N, E = sh["B"], sh["H"], sh["N"], sh["E"]
        ref = torch.nn.MultiheadAttention(H * E, H, batch_first=True)
        ours = MultiheadAttention(H * E, H, batch_first=True)
        ours.load_state_dict(ref.state_dict())
        x = t(B, N, H * E)  # (B, N, H·E)
        mod = ours if impl == "attnkit_mha" else ref
        if not bwd:
            mod.eval()
        nw = sh["need_weights"]
        return _finish(lambda: mod(x, x, x, need_weights=nw), bwd)
    if cfg["suite"] == "additive":
        B, H, N, E, D = sh["B"], sh["H"], sh["N"], sh["E"], sh["D"]
        q, k, v = t(B, H, N, E), t(B, H, N, E), t(B, H, N, E)
        w_q, w_k, va = t(D, E, scale=E ** -0.5), t(D, E, scale=E ** -0.5), t(D, scale=D ** -0.5)
        if impl == "attnkit_additive":
            p = {"w_q": w_q, "w_k": w_k, "v": va}
            return _finish(lambda: attention(q, k, v, score="additive", score_params=p), bwd)
        if impl == "naive_eager":
            return _finish(lambda: naive_additive(q, k, v, w_q, w_k, va), bwd)
        if impl == "naive_compile":
            fn = _COMPILED.setdefault("naive", torch.compile(naive_additive))
            return _finish(lambda: fn(q, k, v, w_q, w_k, va), bwd)
        if impl == "chunked_autograd":
            return _finish(lambda: chunked_autograd(q, k, v, w_q, w_k, va), bwd)
    raise ValueError(f"unknown implementation {impl!r} for suite {cfg['suite']!r}")


def needed_bytes(cfg: dict[str, Any]) -> int:
    """Rough peak bytes of a configuration (to skip what cannot fit instead of thrashing); 0: small."""
    sh = cfg["shape"]
    if cfg["suite"] != "additive":
        return 0
    pairs_d = sh["B"] * sh["H"] * sh["N"] * sh["N"] * sh["D"]
    if cfg["impl"] in ("naive_eager", "naive_compile"):
        return pairs_d * 4 * (1 if cfg["impl"] == "naive_compile" and cfg["mode"] == "fwd" else 3)
    if cfg["impl"] == "chunked_autograd" and cfg["mode"] == "fwd+bwd":
        return pairs_d * 4 * 2  # every tile's sum and tanh are kept for backward
    return 0


def configs(suite: str, modes: list[str], sizes: list[int] | None, quick: bool) -> list[dict[str, Any]]:
    """The configurations of ``suite`` for ``modes`` ("fwd", "fwd+bwd"); ``sizes`` overrides N (L=S)."""
    out = []
    if suite in ("dot", "mha"):
        heads = [(8, 64), (4, 128)] if not quick else [(2, 16)]
        ns = sizes or ([256, 512, 1024, 2048, 4096] if not quick else [64])
        tokens = 4096 if not quick else 128
        for H, E in heads:
            for N in ns:
                base = {"B": max(1, tokens // N), "H": H, "N": N, "E": E}
                for mode in modes:
                    if suite == "dot":
                        out.append({"suite": suite, "shape": dict(base), "mode": mode})
                    else:
                        for nw in (False, True):
                            out.append({"suite": suite, "shape": {**base, "need_weights": nw}, "mode": mode})
    elif suite == "additive":
        ns = sizes or ([256, 512, 1024, 8192] if not quick else [32])
        for N in ns:
            for mode in modes:
                c: dict[str, Any] = {"suite": suite, "shape": {"B": 4 if not quick else 2, "H": 1, "N": N,
                                                               "E": 128 if not quick else 16,
                                                               "D": 128 if not quick else 16}, "mode": mode}
                if N >= 4096:
                    c.update(warmup=0, repeats=1)
                out.append(c)
    else:
        raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    return out


# ---------------------------------------------------------------- rows


def shape_str(sh: dict[str, Any]) -> str:
    """"B=16 H=8 N=256 E=64" (and "weights=yes/no" for mha)."""
    parts = [f"{k}={v}" for k, v in sh.items() if k != "need_weights"]
    if "need_weights" in sh:
        parts.append(f"weights={'yes' if sh['need_weights'] else 'no'}")
    return " ".join(parts)


def _work(cfg: dict[str, Any]) -> dict[str, float]:
    """FLOPs (dot, mha) or pairs·D (additive) of one call; backward counted as 2.5x forward."""
    sh = cfg["shape"]
    mult = 3.5 if cfg["mode"] == "fwd+bwd" else 1.0
    if cfg["suite"] == "additive":
        return {"pairs_d": sh["B"] * sh["H"] * sh["N"] ** 2 * sh["D"] * mult}
    return {"flops": 4 * sh["B"] * sh["H"] * sh["N"] ** 2 * sh["E"] * mult}


def _stats(ms: list[float] | None) -> tuple[float | None, float | None, float | None]:
    if not ms:
        return None, None, None
    s = Summary.of(ms)
    return s.median, s.p10, s.p90


def make_row(cfg: dict[str, Any], ours: dict[str, Any], peer_name: str, peer: dict[str, Any]) -> dict[str, Any]:
    """One result row from the measurements of ours and a peer (``{"ms": [...], "peak_mb", "error"}``).

    ``speedup`` = peer median / ours and ``memory_ratio`` = peer MB / ours: > 1 means attnkit wins.
    """
    m, p10, p90 = _stats(ours.get("ms"))
    pm, pp10, pp90 = _stats(peer.get("ms"))
    row: dict[str, Any] = {
        "suite": cfg["suite"], "impl": OURS[cfg["suite"]], "peer": peer_name, "shape": shape_str(cfg["shape"]),
        "mode": cfg["mode"], "ms_median": m, "ms_p10": p10, "ms_p90": p90, "peak_mb": ours.get("peak_mb"),
        "peer_ms_median": pm, "peer_ms_p10": pp10, "peer_ms_p90": pp90, "peer_peak_mb": peer.get("peak_mb"),
        "speedup": (pm / m) if (m and pm) else None,
        "memory_ratio": (peer["peak_mb"] / ours["peak_mb"]) if ours.get("peak_mb") and peer.get("peak_mb") else None,
        "repeats": len(ours.get("ms") or []),
    }
    w = _work(cfg)
    if m:
        if "flops" in w:
            row["gflops"] = w["flops"] / (m * 1e-3) / 1e9
        else:
            row["gpairs_d_per_s"] = w["pairs_d"] / (m * 1e-3) / 1e9
    if "error" in ours:
        row["error"] = ours["error"]
    if "error" in peer:
        row["peer_error"] = peer["error"]
    return row
