"""attnkit.nn layers against their peers, on CPU (the protocol of ``attnkit bench``).

1. ``mha``: ``attnkit.nn.MultiheadAttention`` (the drop-in) against
   ``torch.nn.MultiheadAttention`` with the same state_dict; self-attention,
   batch_first, fp32, B·N = 4096 tokens, E = 512, H = 8; forward and
   forward+backward; need_weights off (the fused path) and on.
2. ``decode``: ``attnkit.nn.MultiHeadAttention`` generating N tokens one at a
   time with its KVCache against the same layer recomputing the full causal
   forward at every step (no cache), B = 4, E = 512, H = 8.
3. ``bahdanau``: one decoder step of ``AdditiveAttention`` (B = 64, S = 512,
   D = 256) against the eager Keras/OpenNMT formula that materialises the
   (B, 1, S, D) tanh tensor.

Ours and the peer alternate repeat by repeat (warm-up 3, then ``--repeats``;
``attnkit.bench.timing.time_paired``), so a noisy shared CPU slows both alike.
Prints median and p10/p90 in ms and the ratio ours / peer (< 1: ours faster);
writes JSON to ``--out``.

    .venv/bin/python benchmarks/bench_nn.py
    .venv/bin/python benchmarks/bench_nn.py --only mha --repeats 10
    .venv/bin/python benchmarks/bench_nn.py --only decode --only bahdanau --threads 1

On a CPU shared with other jobs, 2-thread timings of small operations (one
decode step, one decoder step) are dominated by OpenMP threads waiting for a
busy core (a (4, 512) x (512, 512) linear went from 0.07 ms to 40 ms here);
``--threads 1`` gives steadier numbers there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

import torch

from attnkit.bench.timing import Summary, time_paired
from attnkit.nn import AdditiveAttention, MultiHeadAttention, MultiheadAttention


def _ms(s: Summary) -> dict[str, float]:
    ms = s.scaled(1e3)
    return {"median_ms": ms.median, "p10_ms": ms.p10, "p90_ms": ms.p90}


def race(ours: Callable[[], None], peer: Callable[[], None], repeats: int) -> dict[str, dict[str, float]]:
    o, p = (_ms(s) for s in time_paired(ours, peer, warmup=3, repeats=repeats))
    return {"ours": o, "peer": p, "ratio": o["median_ms"] / p["median_ms"]}


def bench_mha(repeats: int) -> list[dict]:
    rows = []
    E, H, tokens = 512, 8, 4096
    for N in (256, 1024):
        B = tokens // N
        torch.manual_seed(0)
        ref = torch.nn.MultiheadAttention(E, H, batch_first=True)
        ours = MultiheadAttention(E, H, batch_first=True)
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(B, N, E, requires_grad=True)
        for need_weights in (False, True):
            if need_weights and N > 256:
                continue
            for mode in ("fwd", "fwd+bwd"):

                def run(m, nw=need_weights, md=mode):
                    if md == "fwd":
                        with torch.no_grad():
                            m(x, x, x, need_weights=nw)
                    else:
                        m(x, x, x, need_weights=nw)[0].sum().backward()

                r = race(lambda: run(ours), lambda: run(ref), repeats)
                rows.append({"bench": "mha", "B": B, "N": N, "E": E, "H": H, "need_weights": need_weights,
                             "mode": mode, "peer_name": "torch.nn.MultiheadAttention", **r})
    return rows


def bench_decode(repeats: int, N: int = 128) -> list[dict]:
    E, H, B = 512, 8, 4
    torch.manual_seed(0)
    m = MultiHeadAttention(E, num_heads=H).eval()
    x = torch.randn(B, N, E)

    @torch.no_grad()
    def cached():
        cache = m.new_cache(B, N)
        for t in range(N):
            m(x[:, t : t + 1], causal=True, cache=cache)

    @torch.no_grad()
    def recompute():
        for t in range(N):
            m(x[:, : t + 1], causal=True)

    r = race(cached, recompute, max(3, repeats // 3))
    return [{"bench": "decode", "B": B, "N": N, "E": E, "H": H, "mode": "fwd",
             "peer_name": "same layer, full causal recompute per step", **r}]


def bench_bahdanau(repeats: int) -> list[dict]:
    B, S, D = 64, 512, 256
    torch.manual_seed(0)
    att = AdditiveAttention(D, hidden_dim=D)
    q, k = torch.randn(B, D), torch.randn(B, S, D)

    def naive():  # Keras / OpenNMT: materialise (B, 1, S, D)
        e = torch.tanh((q @ att.w_q.T)[:, None, None, :] + (k @ att.w_k.T)[:, None, :, :]) @ att.v  # (B, 1, S)
        return torch.softmax(e, -1) @ k  # (B, 1, D)

    rows = []
    for mode in ("fwd", "fwd+bwd"):
        def ours(md=mode):
            if md == "fwd":
                with torch.no_grad():
                    att(q, k)
            else:
                att(q, k).context.sum().backward()

        def peer(md=mode):
            if md == "fwd":
                with torch.no_grad():
                    naive()
            else:
                naive().sum().backward()

        r = race(ours, peer, repeats)
        rows.append({"bench": "bahdanau", "B": B, "S": S, "D": D, "mode": mode,
                     "peer_name": "eager naive formula (B, 1, S, D)", **r})
    return rows


BENCHES = {"mha": bench_mha, "decode": bench_decode, "bahdanau": bench_bahdanau}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=sorted(BENCHES), action="append", help="run only these (repeatable)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_nn.json"))
    args = ap.parse_args()
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.only or list(BENCHES):
        rows += BENCHES[name](args.repeats)
    print(f"{'bench':9} {'config':38} {'mode':8} {'ours ms (p10-p90)':>22} {'peer ms (p10-p90)':>22} "
          f"{'ratio':>6}  peer")
    for r in rows:
        cfg = ", ".join(f"{k}={r[k]}" for k in ("B", "N", "S", "E", "H", "D", "need_weights") if k in r)
        o, p = r["ours"], r["peer"]
        ours = f"{o['median_ms']:.2f} ({o['p10_ms']:.1f}-{o['p90_ms']:.1f})"
        peer = f"{p['median_ms']:.2f} ({p['p10_ms']:.1f}-{p['p90_ms']:.1f})"
        print(f"{r['bench']:9} {cfg:38} {r['mode']:8} {ours:>22} {peer:>22} {r['ratio']:6.2f}  {r['peer_name']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": args.threads, "dtype": "float32", "device": "cpu",
                                    "torch": torch.__version__, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
