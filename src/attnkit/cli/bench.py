"""``attnkit bench``: attnkit's attention beside the peer it replaces, timed in the same run.

Protocol (DESIGN.md, CPU): ``torch.set_num_threads(2)``, float32, warm-up 3
then >= 10 repeats, median and p10/p90 in milliseconds; every configuration
runs in a fresh subprocess per implementation (``--quick`` runs in-process);
peak memory is the growth of the process's resident high-water mark over one
steady-state call (``VmHWM`` reset after the warm-up through
/proc/self/clear_refs, so compilation is not counted; glibc is told to return
freed blocks to the OS so reuse does not hide allocations; falls back to the
``ru_maxrss`` delta of a cold call where the reset is unavailable).

Suites (each of our rows sits beside its peer and the ratio peer/ours, so > 1
means attnkit is faster or smaller):

* ``dot``: ``attnkit.attention`` (dispatches to the ``sdpa`` backend) vs
  ``torch.nn.functional.scaled_dot_product_attention`` called directly.
  B·N = 4096 tokens, H=8/E=64 and H=4/E=128, N = 256..4096.
* ``mha``: ``attnkit.nn.MultiheadAttention`` vs ``torch.nn.MultiheadAttention``
  (same weights), need_weights False and True.
* ``additive``: ``attention(score="additive")`` (the ``chunked`` backend) vs
  the Keras/OpenNMT formula that materialises (B, L, S, D) (``naive_eager``),
  ``torch.compile`` of that formula (``naive_compile``) and the same tile loop
  differentiated by plain autograd (``chunked_autograd``, no custom backward).
  B=4, H=1, D=128, L=S=256..1024, plus L=S=8192 (one repeat) where the naive
  formula cannot run; rows report pairs·D per second.

Configurations a peer cannot fit in memory are reported, not run.

    attnkit bench --suite additive --json
    attnkit bench --quick
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

from . import CliError

SUITES = ("dot", "mha", "additive")
PEERS = {
    "dot": ("torch_sdpa",),
    "mha": ("torch_mha",),
    "additive": ("naive_eager", "naive_compile", "chunked_autograd"),
}
OURS = {"dot": "attnkit", "mha": "attnkit_mha", "additive": "attnkit_additive"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time attnkit's kernels beside torch SDPA, nn.MultiheadAttention and naive additive attention",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--suite", default=",".join(SUITES), help=f"comma-separated suites from {', '.join(SUITES)}")
    p.add_argument("--peers", default=None, help="comma-separated peers to run (default: all of each suite)")
    p.add_argument("--mode", default="fwd,fwd+bwd", help="fwd, fwd+bwd or both (default both)")
    p.add_argument("--sizes", default=None, help="comma-separated N (dot, mha) or L=S (additive) to run")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 warm-up, 3 repeats, in-process (smoke test)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up calls (default 3)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls (default 10)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--paired", action="store_true",
                   help="time ours and the peer alternately in one subprocess (fairer on a busy machine)")
    p.add_argument("--json", action="store_true", help="print one JSON object per row instead of a table")
    p.add_argument("--out", default=None, help="also write all rows as a JSON list to this file")
    p.set_defaults(func=run)


# ---------------------------------------------------------------- implementations


def _naive_additive(q, k, v, w_q, w_k, va):
    """Keras/OpenNMT/d2l: ``softmax(vᵀ tanh(W_q q + W_k k)) v`` through a (B, H, L, S, D) tensor."""
    import torch

    qp, kp = q @ w_q.T, k @ w_k.T  # (B, H, L, D), (B, H, S, D)
    s = torch.tanh(qp.unsqueeze(-2) + kp.unsqueeze(-3)) @ va  # (B, H, L, S, D) -> (B, H, L, S)
    return torch.softmax(s, dim=-1) @ v


def _chunked_autograd(q, k, v, w_q, w_k, va, block_q=64, block_k=64):
    """The online-softmax tile loop with plain autograd (it stores every tile for backward)."""
    import torch

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


_COMPILED: dict[str, Any] = {}


def build_step(cfg: dict[str, Any]) -> Callable[[], Any]:
    """A zero-argument call running one configuration (forward, or forward + backward)."""
    import torch
    import torch.nn.functional as F

    from ..functional import attention

    impl, sh, bwd = cfg["impl"], cfg["shape"], cfg["mode"] == "fwd+bwd"
    g = torch.Generator().manual_seed(0)

    def t(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).requires_grad_(bwd)

    def finish(fn: Callable[[], Any]) -> Callable[[], Any]:
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

    if cfg["suite"] == "dot":
        B, H, N, E = sh["B"], sh["H"], sh["N"], sh["E"]
        q, k, v = t(B, H, N, E), t(B, H, N, E), t(B, H, N, E)
        if impl == "attnkit":
            return finish(lambda: attention(q, k, v))
        if impl == "torch_sdpa":
            return finish(lambda: F.scaled_dot_product_attention(q, k, v))
    if cfg["suite"] == "mha":
        from ..nn import MultiheadAttention

        B, H, N, E = sh["B"], sh["H"], sh["N"], sh["E"]
        ref = torch.nn.MultiheadAttention(H * E, H, batch_first=True)
        ours = MultiheadAttention(H * E, H, batch_first=True)
        ours.load_state_dict(ref.state_dict())
        x = t(B, N, H * E)
        mod = ours if impl == "attnkit_mha" else ref
        if not bwd:
            mod.eval()
        nw = sh["need_weights"]
        return finish(lambda: mod(x, x, x, need_weights=nw))
    if cfg["suite"] == "additive":
        B, H, N, E, D = sh["B"], sh["H"], sh["N"], sh["E"], sh["D"]
        q, k, v = t(B, H, N, E), t(B, H, N, E), t(B, H, N, E)
        w_q, w_k, va = t(D, E, scale=E ** -0.5), t(D, E, scale=E ** -0.5), t(D, scale=D ** -0.5)
        if impl == "attnkit_additive":
            p = {"w_q": w_q, "w_k": w_k, "v": va}
            return finish(lambda: attention(q, k, v, score="additive", score_params=p))
        if impl == "naive_eager":
            return finish(lambda: _naive_additive(q, k, v, w_q, w_k, va))
        if impl == "naive_compile":
            fn = _COMPILED.setdefault("naive", torch.compile(_naive_additive))
            return finish(lambda: fn(q, k, v, w_q, w_k, va))
        if impl == "chunked_autograd":
            return finish(lambda: _chunked_autograd(q, k, v, w_q, w_k, va))
    raise CliError(f"unknown implementation {impl!r} for suite {cfg['suite']!r}")


def needed_bytes(cfg: dict[str, Any]) -> int:
    """Rough peak bytes of a configuration (to skip what cannot fit instead of thrashing)."""
    sh = cfg["shape"]
    if cfg["suite"] != "additive":
        return 0
    pairs_d = sh["B"] * sh["H"] * sh["N"] * sh["N"] * sh["D"]
    if cfg["impl"] in ("naive_eager", "naive_compile"):
        return pairs_d * 4 * (1 if cfg["impl"] == "naive_compile" and cfg["mode"] == "fwd" else 3)
    if cfg["impl"] == "chunked_autograd" and cfg["mode"] == "fwd+bwd":
        return pairs_d * 4 * 2  # every tile's sum and tanh are kept for backward
    return 0


# ---------------------------------------------------------------- measurement


def _rss_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(cfg: dict[str, Any], *, warmup: int, repeats: int, threads: int, memory: bool) -> dict[str, Any]:
    """Time (and optionally peak memory of) one configuration in this process."""
    import torch

    torch.set_num_threads(threads)
    cold_base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step = build_step(cfg)
    res: dict[str, Any] = {}
    peak_mb = None
    if memory:
        single = warmup == 0 and repeats == 1  # one cold call timed and measured at once (huge sizes)
        if not single:
            step()  # warm-up (compilation, lazy init) outside the measured call
        gc.collect()
        reset = _reset_peak()
        base = _rss_kb("VmRSS")
        t0 = time.perf_counter()
        step()
        elapsed = (time.perf_counter() - t0) * 1e3
        hwm = _rss_kb("VmHWM")
        if reset and base is not None and hwm is not None:
            peak_mb = max(0.0, (hwm - base) / 1024)
        else:
            peak_mb = max(0.0, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - cold_base) / 1024)
        res["peak_mb"] = peak_mb
        if single:
            res["ms"] = [elapsed]
            return res
    if repeats > 0:
        for _ in range(warmup):
            step()
        ms = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            ms.append((time.perf_counter() - t0) * 1e3)
        res["ms"] = ms
    return res


def measure_paired(ours: dict[str, Any], peer: dict[str, Any], *, warmup: int, repeats: int,
                   threads: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Time two implementations alternately (A B A B ...) so both see the same machine load."""
    import torch

    torch.set_num_threads(threads)
    a, b = build_step(ours), build_step(peer)
    for _ in range(warmup):
        a()
        b()
    ms_a, ms_b = [], []
    for i in range(repeats):
        for step, ms in ((a, ms_a), (b, ms_b)) if i % 2 == 0 else ((b, ms_b), (a, ms_a)):
            t0 = time.perf_counter()
            step()
            ms.append((time.perf_counter() - t0) * 1e3)
    return {"ms": ms_a}, {"ms": ms_b}


def child_main(arg: str) -> None:
    """Entry point of the per-configuration subprocess: prints one JSON line."""
    job = json.loads(arg)
    try:
        if "peer_cfg" in job:
            a, b = measure_paired(job["cfg"], job["peer_cfg"], warmup=job["warmup"], repeats=job["repeats"],
                                  threads=job["threads"])
            print("BENCH " + json.dumps({"ours": a, "peer": b}), flush=True)
            return
        res = measure(job["cfg"], warmup=job["warmup"], repeats=job["repeats"], threads=job["threads"],
                      memory=job["memory"])
    except (RuntimeError, MemoryError, ValueError) as e:
        res = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    print("BENCH " + json.dumps(res), flush=True)


def _in_subprocess(job: dict[str, Any], *, memory_env: bool) -> dict[str, Any]:
    env = dict(os.environ)
    if memory_env:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"  # blocks >= 64 KiB are mmapped and returned on free
        env["MALLOC_TRIM_THRESHOLD_"] = "0"
    cmd = [sys.executable, "-c", "import sys; from attnkit.cli.bench import child_main; child_main(sys.argv[1])",
           json.dumps(job)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in r.stdout.splitlines()[::-1]:
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    return {"error": f"exit status {r.returncode} (killed: out of memory?) {r.stderr.strip()[-200:]}"}


def run_config(cfg: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    from ..backends import available_bytes, format_bytes

    import torch

    need = needed_bytes(cfg)
    have = available_bytes(torch.device("cpu"))
    if need and have is not None and need > 0.8 * have:
        return {"error": f"needs about {format_bytes(need)}, {format_bytes(have)} available: cannot run"}
    repeats = cfg.get("repeats", opts["repeats"])
    warmup = cfg.get("warmup", opts["warmup"])
    if opts["quick"]:
        try:
            return measure(cfg, warmup=warmup, repeats=repeats, threads=opts["threads"], memory=opts["memory"])
        except (RuntimeError, MemoryError) as e:
            return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    job = {"cfg": cfg, "warmup": warmup, "repeats": repeats, "threads": opts["threads"], "memory": False}
    if warmup == 0 and repeats == 1 and opts["memory"]:  # huge: one call, timed and measured in one child
        return _in_subprocess({**job, "memory": True}, memory_env=True)
    res = _in_subprocess(job, memory_env=False)
    if opts["memory"] and "error" not in res:
        mem = _in_subprocess({**job, "memory": True, "repeats": 0}, memory_env=True)
        res["peak_mb"] = mem.get("peak_mb")
        if "error" in mem:
            res["memory_error"] = mem["error"]
    return res


def run_paired(cfg: dict[str, Any], ours: str, peer: str, opts: dict[str, Any]) -> tuple[dict, dict]:
    """Ours and the peer timed alternately in one fresh subprocess (memory: one subprocess each)."""
    a_cfg, b_cfg = {**cfg, "impl": ours}, {**cfg, "impl": peer}
    job = {"cfg": a_cfg, "peer_cfg": b_cfg, "warmup": opts["warmup"], "repeats": opts["repeats"],
           "threads": opts["threads"], "memory": False}
    if opts["quick"]:
        a, b = measure_paired(a_cfg, b_cfg, warmup=opts["warmup"], repeats=opts["repeats"], threads=opts["threads"])
    else:
        res = _in_subprocess(job, memory_env=False)
        if "error" in res:
            return res, res
        a, b = res["ours"], res["peer"]
    if opts["memory"]:
        for c, r in ((a_cfg, a), (b_cfg, b)):
            mem = run_config(c, {**opts, "repeats": 0}) if opts["quick"] else _in_subprocess(
                {"cfg": c, "warmup": 0, "repeats": 0, "threads": opts["threads"], "memory": True}, memory_env=True)
            r["peak_mb"] = mem.get("peak_mb")
    return a, b


# ---------------------------------------------------------------- suites


def configs(suite: str, modes: list[str], sizes: list[int] | None, quick: bool) -> list[dict[str, Any]]:
    out = []
    if suite in ("dot", "mha"):
        heads = [(8, 64), (4, 128)] if not quick else [(2, 16)]
        ns = sizes or ([256, 512, 1024, 2048, 4096] if not quick else [64])
        tokens = 4096 if not quick else 128
        for H, E in heads:
            for N in ns:
                base = {"B": max(1, tokens // N), "H": H, "N": N, "E": E if suite == "dot" else E}
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
        raise CliError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    return out


def _shape_str(sh: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in sh.items() if k != "need_weights"]
    if "need_weights" in sh:
        parts.append(f"weights={'yes' if sh['need_weights'] else 'no'}")
    return " ".join(parts)


def _stats(ms: list[float] | None) -> tuple[float | None, float | None, float | None]:
    if not ms:
        return None, None, None
    s = sorted(ms)
    q = statistics.quantiles(s, n=10, method="inclusive") if len(s) > 1 else [s[0]] * 9
    return statistics.median(s), q[0], q[-1]


def _work(cfg: dict[str, Any]) -> dict[str, float]:
    sh = cfg["shape"]
    mult = 3.5 if cfg["mode"] == "fwd+bwd" else 1.0  # backward ~ 2.5x forward
    if cfg["suite"] == "additive":
        return {"pairs_d": sh["B"] * sh["H"] * sh["N"] ** 2 * sh["D"] * mult}
    H, E = sh["H"], sh["E"]
    return {"flops": 4 * sh["B"] * H * sh["N"] ** 2 * E * mult}


def make_rows(cfg: dict[str, Any], ours: dict[str, Any], peer_name: str, peer: dict[str, Any]) -> dict[str, Any]:
    m, p10, p90 = _stats(ours.get("ms"))
    pm, pp10, pp90 = _stats(peer.get("ms"))
    row: dict[str, Any] = {
        "suite": cfg["suite"], "impl": OURS[cfg["suite"]], "peer": peer_name, "shape": _shape_str(cfg["shape"]),
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


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[dict[str, Any]]) -> None:
    hdr = (f"{'suite':<9} {'shape':<30} {'mode':<8} {'ours ms (p10-p90)':>22} {'peer':<17} "
           f"{'peer ms (p10-p90)':>22} {'x faster':>8} {'MB ours':>8} {'MB peer':>8} {'x mem':>6}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        ours = f"{_fmt(r['ms_median'])} ({_fmt(r['ms_p10'])}-{_fmt(r['ms_p90'])})"
        peer = f"{_fmt(r['peer_ms_median'])} ({_fmt(r['peer_ms_p10'])}-{_fmt(r['peer_ms_p90'])})"
        if r.get("peer_error"):
            peer = "cannot run"
        if r.get("error"):
            ours = "error"
        print(f"{r['suite']:<9} {r['shape']:<30} {r['mode']:<8} {ours:>22} {r['peer']:<17} {peer:>22} "
              f"{_fmt(r['speedup'], '.2f'):>8} {_fmt(r['peak_mb'], '.0f'):>8} {_fmt(r['peer_peak_mb'], '.0f'):>8} "
              f"{_fmt(r['memory_ratio'], '.1f'):>6}")
    notes = sorted({f"{r['peer']}: {r['peer_error']}" for r in rows if r.get("peer_error")}
                   | {f"{r['impl']}: {r['error']}" for r in rows if r.get("error")})
    for n in notes:
        print(f"  note: {n}")
    print("x faster = peer ms / ours (> 1: attnkit faster); x mem = peer MB / ours. Same run, same machine.")


def run(args: argparse.Namespace) -> int:
    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    for m in modes:
        if m not in ("fwd", "fwd+bwd"):
            raise CliError(f"--mode must list fwd and/or fwd+bwd, got {m!r}")
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        raise CliError(f"--repeats >= 1, --warmup >= 0, --threads >= 1 needed; got {args.repeats}, "
                       f"{args.warmup}, {args.threads}")
    sizes = None
    if args.sizes:
        try:
            sizes = [int(x) for x in args.sizes.split(",")]
        except ValueError:
            raise CliError(f"--sizes must be comma-separated integers, got {args.sizes!r}") from None
    peers_filter = set(args.peers.split(",")) if args.peers else None
    opts = {"warmup": args.warmup if not args.quick else 1, "repeats": args.repeats if not args.quick else 3,
            "threads": args.threads, "memory": not args.no_memory, "quick": args.quick}
    rows = []
    for suite in suites:
        peers = [p for p in PEERS.get(suite, ()) if peers_filter is None or p in peers_filter]
        for cfg in configs(suite, modes, sizes, args.quick):
            if args.paired:
                for peer in peers:
                    ours, theirs = run_paired(cfg, OURS[suite], peer, opts)
                    row = make_rows(cfg, ours, peer, theirs)
                    row["paired"] = True
                    rows.append(row)
                    if args.json:
                        print(json.dumps(row), flush=True)
                continue
            ours = run_config({**cfg, "impl": OURS[suite]}, opts)
            for peer in peers:
                theirs = run_config({**cfg, "impl": peer}, opts)
                row = make_rows(cfg, ours, peer, theirs)
                rows.append(row)
                if args.json:
                    print(json.dumps(row), flush=True)
    if not args.json:
        print_table(rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"threads": args.threads, "rows": rows}, f, indent=1)
    return 0

