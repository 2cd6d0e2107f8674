"""Ring attention on CPU (gloo): peak memory per rank, time per step and communication share.

Ring attention (Liu et al. 2023, arXiv:2310.01889) with the zigzag layout (Brandon et al. 2023,
arXiv:2311.09431) through ``attnkit.distributed.ring_attention``, forward + backward, B=1, H=1,
E=D=128, at world sizes 1, 2, 4 (each a fresh set of processes, gloo over loopback,
``max(1, --threads // P)`` torch threads per rank: the machine's cores shared out). Per configuration,
one warm-up step (compilation of the additive tiles),
then ``--repeats`` measured steps, each rank's peak resident memory above its resident set before
the step (``attnkit.bench.memory``: VmHWM reset per step, glibc returning freed blocks), the step's
wall time, and the share of it each rank spent waiting for a transfer
(``attnkit.distributed.ring_stats``). ``os.getloadavg()`` is recorded before and after.

Peers measured in the same run:

* additive: single-process ``attnkit.functional.attention`` at the same length (the chunked
  kernel, what world size 1 would be without the ring);
* dot family: torch's ``torch.distributed.tensor.experimental.context_parallel`` around
  ``scaled_dot_product_attention`` at world size 2; on CPU it cannot run, and its error text is
  recorded.

    python benchmarks/bench_ring.py --length 32768              # the issue's size (slow on 2 cores)
    python benchmarks/bench_ring.py --length 32768 --warmup-length 4096   # warm-up (compilation) on a short step
    python benchmarks/bench_ring.py --length 4096 --worlds 1,2  # a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import socket
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from attnkit.bench.memory import MALLOC_ENV, reset_peak, rss_kb
from attnkit.distributed import ring_attention, ring_stats
from attnkit.functional import attention


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inputs(L: int, D: int, seed: int, score: str) -> tuple[list[torch.Tensor], dict, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    qkv = [torch.randn(1, 1, L, D, generator=gen).requires_grad_() for _ in range(3)]
    params = {}
    if score == "additive":
        params = {"w_q": (torch.randn(D, D, generator=gen) / D**0.5).requires_grad_(),
                  "w_k": (torch.randn(D, D, generator=gen) / D**0.5).requires_grad_(),
                  "v": torch.randn(D, generator=gen).requires_grad_()}
    return qkv, params, torch.randn(1, 1, L, D, generator=gen)


def _measure(step, repeats: int, warmup=None) -> list[dict]:
    (warmup or step)()  # warm-up: compilation, lazy initialisation (``warmup``: a shorter step that does it)
    rows = []
    for _ in range(repeats):
        gc.collect()
        reset = reset_peak()
        base = rss_kb("VmRSS")
        t0 = time.perf_counter()
        stats = step()
        wall = time.perf_counter() - t0
        hwm = rss_kb("VmHWM")
        rows.append({"seconds": wall, "peak_mb": (hwm - base) / 1024 if reset and base and hwm else None, **stats})
    return rows


def _rank(rank: int, P: int, port: int, job: dict, queue) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(job["threads"])
    dist.init_process_group("gloo", rank=rank, world_size=P, timeout=datetime.timedelta(seconds=3600))
    try:
        L, D, score = job["length"], job["dim"], job["score"]
        def make_step(length: int):
            qkv, params, g = _inputs(length // P, D, 100 + rank, score)  # this rank's shard only: nothing full

            def step() -> dict:
                with ring_stats() as st:
                    out = ring_attention(*qkv, score=score, score_params=params or None, causal=job["causal"],
                                         layout="zigzag")
                    out.backward(g)
                for t in [*qkv, *params.values()]:
                    t.grad = None
                return {"comm_wait_s": st.comm_wait_s, "compute_s": st.compute_s, "mb_sent": st.bytes_sent / 2**20}
            return step

        warm = job.get("warmup_length")
        rows = _measure(make_step(L), job["repeats"], make_step(warm) if warm and warm != L else None)
        queue.put({"rank": rank, "rows": rows})
    except Exception:  # noqa: BLE001  (reported in the JSON)
        queue.put({"rank": rank, "error": traceback.format_exc()[-800:]})
    finally:
        dist.destroy_process_group()


def run_world(P: int, job: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    load0 = os.getloadavg()
    mp.start_processes(_rank, args=(P, _free_port(), job, queue), nprocs=P, join=True, start_method="spawn")
    ranks = sorted((queue.get() for _ in range(P)), key=lambda r: r["rank"])
    errors = [r["error"] for r in ranks if "error" in r]
    if errors:
        return {"world": P, "error": errors[0], "load": [load0, os.getloadavg()]}
    reps = len(ranks[0]["rows"])
    steps = [max(r["rows"][i]["seconds"] for r in ranks) for i in range(reps)]
    best = min(range(reps), key=lambda i: steps[i])
    per_rank = [r["rows"][best] for r in ranks]
    return {
        "world": P,
        "seconds_per_step": steps[best],
        "seconds_all": steps,
        "peak_mb_per_rank": [r["peak_mb"] for r in per_rank],
        "comm_share": max(r["comm_wait_s"] / max(r["seconds"], 1e-9) for r in per_rank),
        "mb_sent_per_rank": per_rank[0]["mb_sent"],
        "load": [load0, os.getloadavg()],
    }


def _single(job: dict, queue) -> None:
    torch.set_num_threads(job["threads"])
    try:
        def make_step(length: int):
            qkv, params, g = _inputs(length, job["dim"], 100, job["score"])

            def step() -> dict:
                out = attention(*qkv, score=job["score"], score_params=params or None, causal=job["causal"])
                out.backward(g)
                for t in [*qkv, *params.values()]:
                    t.grad = None
                return {}
            return step

        warm = job.get("warmup_length")
        L = job["length"]
        queue.put({"rows": _measure(make_step(L), job["repeats"], make_step(warm) if warm and warm != L else None)})
    except Exception:  # noqa: BLE001
        queue.put({"error": traceback.format_exc()[-800:]})


def run_single(job: dict) -> dict:
    """The peer: single-process attention() at the same length, in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    load0 = os.getloadavg()
    p = ctx.Process(target=_single, args=(job, queue))
    p.start()
    res = queue.get()
    p.join()
    if "error" in res:
        return {"error": res["error"], "load": [load0, os.getloadavg()]}
    best = min(res["rows"], key=lambda r: r["seconds"])
    return {"seconds_per_step": best["seconds"], "peak_mb": best["peak_mb"], "load": [load0, os.getloadavg()]}


def _torch_cp(rank: int, P: int, port: int, job: dict, queue) -> None:
    """torch's context_parallel around SDPA on a CPU mesh: what it does here (on CPU: an error)."""
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=P, timeout=datetime.timedelta(seconds=600))
    try:
        from torch.distributed.device_mesh import init_device_mesh  # noqa: PLC0415  (the peer, only here)
        from torch.distributed.tensor.experimental import context_parallel  # noqa: PLC0415

        mesh = init_device_mesh("cpu", (P,))
        q, k, v = (torch.randn(1, 1, job["length"], job["dim"]) for _ in range(3))
        t0 = time.perf_counter()
        with context_parallel(mesh, buffers=[q, k, v], buffer_seq_dims=[2, 2, 2]):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            out.sum().backward()
        res = {"rank": rank, "seconds_per_step": time.perf_counter() - t0}
    except Exception as e:  # noqa: BLE001  (the peer's refusal is the result)
        res = {"rank": rank, "error": f"{type(e).__name__}: {str(e).strip()[:600]}"}
    queue.put(res)
    dist.destroy_process_group()


def run_torch_cp(P: int, job: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_torch_cp, args=(P, _free_port(), job, queue), nprocs=P, join=True, start_method="spawn")
    return sorted((queue.get() for _ in range(P)), key=lambda r: r["rank"])[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=32768)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--worlds", default="1,2,4")
    ap.add_argument("--scores", default="additive,scaled_dot")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads in all: max(1, threads // P) per rank, all of them for the single process "
                    "(default 1: every configuration on one thread per process; benchmarks/RESULTS.md has what 2 "
                    "threads did on a shared machine)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--warmup-length", type=int, help="run the warm-up step (compilation) at this length instead "
                    "of --length: a full step at 32768 costs many minutes on 2 cores. Keep every rank's chunk "
                    "(L / 2P) >= 2048, the compiled tile's query rows, or a recompilation lands in the measured "
                    "step; the peak then also counts buffers a same-length warm-up leaves resident (4096 after "
                    "a 2048 warm-up: 63 MB against 32 MB), so compare memory only between runs warmed alike")
    ap.add_argument("--no-causal", dest="causal", action="store_false")
    ap.add_argument("--no-single", dest="single", action="store_false",
                    help="skip the single-process peer (measured in an earlier run: its figure is not re-printed)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ring_cpu.json"))
    args = ap.parse_args(argv)
    os.environ.update(MALLOC_ENV)  # children inherit it: freed blocks go back to the OS
    worlds = [int(w) for w in args.worlds.split(",")]
    results: dict = {"length": args.length, "dim": args.dim, "causal": args.causal, "threads": args.threads,
                     "warmup_length": args.warmup_length, "cpus": os.cpu_count(), "torch": torch.__version__,
                     "runs": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every configuration: a run stopped part-way keeps what it measured
        out.write_text(json.dumps(results, indent=1))
    for score in args.scores.split(","):
        job = {"length": args.length, "dim": args.dim, "score": score, "causal": args.causal,
               "threads": args.threads, "repeats": args.repeats, "warmup_length": args.warmup_length}
        peer = run_single(job) if args.single else {"error": "not measured (--no-single)", "load": [os.getloadavg()]}
        print(f"{score}: single-process attention() L={args.length}: "
              + (f"{peer['seconds_per_step']:.2f} s/step, peak {peer['peak_mb']:.0f} MB" if "error" not in peer
                 else peer["error"].splitlines()[-1]) + f"  load {peer['load'][0][0]:.1f}", flush=True)
        results["runs"].append({"score": score, "kind": "single_process_attention", **peer})
        save()
        for P in worlds:
            r = run_world(P, {**job, "threads": max(1, args.threads // P)})
            results["runs"].append({"score": score, "kind": "ring", **r})
            save()
            if "error" in r:
                print(f"{score}: ring P={P}: {r['error'].splitlines()[-1]}", flush=True)
                continue
            ratio = r["seconds_per_step"] / peer["seconds_per_step"] if "error" not in peer else float("nan")
            print(f"{score}: ring P={P}: {r['seconds_per_step']:.2f} s/step ({ratio:.2f}x single-process), "
                  f"peak per rank {max(r['peak_mb_per_rank']):.0f} MB, comm wait {100 * r['comm_share']:.0f} %, "
                  f"sent {r['mb_sent_per_rank']:.0f} MB/rank  load {r['load'][0][0]:.1f}->{r['load'][1][0]:.1f}",
                  flush=True)
        if score != "additive":
            cp = run_torch_cp(2, job)
            results["runs"].append({"score": score, "kind": "torch_context_parallel", "world": 2, **cp})
            print(f"{score}: torch context_parallel P=2: "
                  + (cp["error"] if "error" in cp else f"{cp['seconds_per_step']:.2f} s/step"), flush=True)
    save()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
