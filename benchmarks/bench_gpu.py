"""GPU benchmark: bf16; timings are medians (``attnkit.bench.timing``) of ``triton.testing.do_bench``'s samples.

Run on a CUDA machine (the device tool lends one to some sessions):

    python benchmarks/bench_gpu.py --out benchmarks/results/gpu.json
    python benchmarks/bench_gpu.py --quick            # one size per suite

Suites:

* ``dot``: B·N = 16384 tokens, hidden 2048 (E=64/H=32 and E=128/H=16),
  N = 512..16384, causal and not, forward and forward+backward:
  ``attnkit.attention`` (sdpa backend) and the ``triton_dot`` kernel beside
  torch SDPA (flash) and FlexAttention (torch.compile'd), ratio peer/ours.
* ``tanh``: the physical ceiling of the additive score. tanh runs on the
  special-function units, so a plain kernel that does nothing but tanh on
  registers measures tanh/s two ways: the hardware ``tanh.approx.f32`` and the
  ``1 - 2/(exp(2x)+1)`` form our kernel uses (one ex2 and one reciprocal).
* ``additive``: ``triton_additive`` forward and forward+backward at B=4, H=1,
  D=128, N = 1024..8192, in pairs·D per second and as a fraction of the tanh
  ceiling (target >= 30 % forward, >= 20 % forward+backward), beside the naive
  formula (materialising (B, L, S, D), bf16) where it fits, and the chunked backend.

Nothing here asserts a time; it prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

import torch
import torch.nn.functional as F

from attnkit.bench.timing import Summary
from attnkit.functional import attention


def _need_cuda() -> None:
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU (none here); the CPU protocol is `attnkit bench`")


def bench(fn: Callable[[], Any]) -> float:
    """The median in ms of ``do_bench``'s timed calls (25 ms warm-up, 100 ms of repeats)."""
    import triton.testing

    return Summary.of(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="all")).median


def fwd_bwd(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        out = fn()
        out.backward(torch.ones_like(out))

    return step


# ---------------------------------------------------------------- tanh ceiling


def tanh_ceiling(n_programs: int = 4096, block: int = 1024, iters: int = 256) -> dict[str, float]:
    """tanh evaluations per second of a register-only kernel (hardware and exp form)."""
    import triton
    import triton.language as tl

    @triton.jit
    def hw_tanh(out_ptr, ITERS: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = offs.to(tl.float32) * 1e-7
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for _ in range(ITERS):
            x = tl.inline_asm_elementwise("tanh.approx.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True,
                                          pack=1) + 0.5
            acc += x
        tl.store(out_ptr + offs, acc)

    @triton.jit
    def exp_tanh(out_ptr, ITERS: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = offs.to(tl.float32) * 1e-7
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for _ in range(ITERS):
            x = (1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)) + 0.5
            acc += x
        tl.store(out_ptr + offs, acc)

    out = torch.empty(n_programs * block, device="cuda")
    n = n_programs * block * iters
    res = {}
    for name, k in (("tanh_hw_per_s", hw_tanh), ("tanh_exp_form_per_s", exp_tanh)):
        ms = bench(lambda k=k: k[(n_programs,)](out, ITERS=iters, BLOCK=block))
        res[name] = n / (ms * 1e-3)
    return res


# ---------------------------------------------------------------- suites


def dot_suite(quick: bool) -> list[dict[str, Any]]:
    from torch.nn.attention.flex_attention import flex_attention

    flex = torch.compile(flex_attention)
    rows = []
    ns = [512, 1024, 2048, 4096, 8192, 16384] if not quick else [1024]
    for H, E in ((32, 64), (16, 128)):
        for N in ns:
            B = max(1, 16384 // N)
            for causal in (False, True):
                q, k, v = (torch.randn(B, H, N, E, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                           for _ in range(3))
                impls = {
                    "attnkit": lambda: attention(q, k, v, causal=causal),
                    "attnkit_triton_dot": lambda: attention(q, k, v, causal=causal, backend="triton_dot"),
                }
                peers = {
                    "torch_sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                }
                if causal:
                    from torch.nn.attention.flex_attention import create_block_mask

                    bm = create_block_mask(lambda b, h, i, j: j <= i, None, None, N, N, device="cuda")
                    peers["flex_attention"] = lambda: flex(q, k, v, block_mask=bm)
                else:
                    peers["flex_attention"] = lambda: flex(q, k, v)
                flops = 4 * B * H * N * N * E / (2 if causal else 1)
                for mode in ("fwd", "fwd+bwd"):
                    res = {}
                    for name, fn in {**impls, **peers}.items():
                        try:
                            if mode == "fwd":
                                with torch.no_grad():
                                    res[name] = bench(fn)
                            else:
                                res[name] = bench(fwd_bwd(fn))
                        except Exception as e:  # noqa: BLE001  (report, do not stop the suite)
                            res[name] = None
                            print(f"  {name} N={N}: {type(e).__name__}: {str(e)[:120]}", file=sys.stderr)
                    mult = 1.0 if mode == "fwd" else 3.5
                    for ours in impls:
                        for peer in peers:
                            m, pm = res.get(ours), res.get(peer)
                            rows.append({
                                "suite": "dot", "impl": ours, "peer": peer,
                                "shape": f"B={B} H={H} N={N} E={E} causal={causal}", "mode": mode,
                                "ms_median": m, "peer_ms_median": pm, "peak_mb": None, "peer_peak_mb": None,
                                "speedup": (pm / m) if m and pm else None,
                                "tflops": flops * mult / (m * 1e-3) / 1e12 if m else None,
                            })
    return rows


def additive_suite(quick: bool, ceiling: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    B, H, D = 4, 1, 128
    for N in ([1024, 2048, 4096, 8192] if not quick else [1024]):
        q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        w_q, w_k = (torch.randn(D, D, device="cuda", dtype=torch.bfloat16) / D**0.5 for _ in range(2))
        va = (torch.randn(D, device="cuda", dtype=torch.bfloat16) / D**0.5).requires_grad_()
        p = {"w_q": w_q, "w_k": w_k, "v": va}

        def naive():
            s = torch.tanh((q @ w_q.T).unsqueeze(-2) + (k @ w_k.T).unsqueeze(-3)) @ va
            return torch.softmax(s.float(), -1).to(v.dtype) @ v

        impls = {
            "attnkit_triton_additive": lambda: attention(q, k, v, score="additive", score_params=p,
                                                         backend="triton_additive"),
            "attnkit_chunked": lambda: attention(q, k, v, score="additive", score_params=p, backend="chunked"),
            "naive_eager": naive,
        }
        fits_naive = B * H * N * N * D * 2 * 4 < torch.cuda.mem_get_info()[0] * 0.8
        for mode in ("fwd", "fwd+bwd"):
            res: dict[str, float | None] = {}
            for name, fn in impls.items():
                if name == "naive_eager" and not fits_naive:
                    res[name] = None
                    continue
                try:
                    torch.cuda.reset_peak_memory_stats()
                    if mode == "fwd":
                        with torch.no_grad():
                            res[name] = bench(fn)
                    else:
                        res[name] = bench(fwd_bwd(fn))
                except Exception as e:  # noqa: BLE001
                    res[name] = None
                    print(f"  {name} N={N}: {type(e).__name__}: {str(e)[:120]}", file=sys.stderr)
            tanh_per_pair = 1 if mode == "fwd" else 3  # forward, plus recompute + derivative in backward
            ours = res["attnkit_triton_additive"]
            for peer in ("naive_eager", "attnkit_chunked"):
                pm = res.get(peer)
                tanh_s = B * H * N * N * D * tanh_per_pair / (ours * 1e-3) if ours else None
                rows.append({
                    "suite": "additive", "impl": "attnkit_triton_additive", "peer": peer,
                    "shape": f"B={B} H={H} N={N} D={D}", "mode": mode, "ms_median": ours, "peer_ms_median": pm,
                    "peak_mb": None, "peer_peak_mb": None, "speedup": (pm / ours) if ours and pm else None,
                    "tanh_per_s": tanh_s,
                    "fraction_of_hw_tanh": tanh_s / ceiling["tanh_hw_per_s"] if tanh_s else None,
                })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--suite", default="tanh,additive,dot")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    _need_cuda()
    suites = args.suite.split(",")
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    ceiling = tanh_ceiling()
    out["tanh_ceiling"] = ceiling
    print(f"{out['device']}: hardware tanh {ceiling['tanh_hw_per_s'] / 1e12:.2f} T/s, "
          f"exp-form tanh {ceiling['tanh_exp_form_per_s'] / 1e12:.2f} T/s")
    rows = []
    if "additive" in suites:
        rows += additive_suite(args.quick, ceiling)
    if "dot" in suites:
        rows += dot_suite(args.quick)
    for r in rows:
        extra = ""
        if r.get("fraction_of_hw_tanh") is not None:
            extra = f" {100 * r['fraction_of_hw_tanh']:.0f}% of tanh ceiling"
        if r.get("tflops") is not None:
            extra = f" {r['tflops']:.1f} TFLOP/s"
        sp = f"{r['speedup']:.2f}x" if r.get("speedup") else "-"
        ms = f"{r['ms_median']:.3f}" if r["ms_median"] else "-"
        pms = f"{r['peer_ms_median']:.3f}" if r["peer_ms_median"] else "cannot run"
        print(f"{r['suite']:<9} {r['impl']:<24} {r['shape']:<34} {r['mode']:<8} {ms:>9} ms | "
              f"{r['peer']:<16} {pms:>10} ms | {sp}{extra}")
    out["rows"] = rows
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
