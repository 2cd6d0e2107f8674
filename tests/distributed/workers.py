"""Worker processes for the distributed tests: one gloo world per test module (torch.multiprocessing
spawn), every case run inside it, the results (max errors, or the error text) sent back from rank 0."""

from __future__ import annotations

import datetime
import os
import re
import socket
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from attnkit.core.scores import Score
from attnkit.distributed import group as dgroup
from attnkit.distributed import ring_attention, shard_sequence, ulysses_attention, unshard_sequence
from attnkit.functional import attention

#: seconds any collective may wait before the world gives up (a hang fails the test, never stalls the suite)
TIMEOUT_S = 90


class NegL1(Score):
    """A user score no dot-product kernel can run: ``score(q, k) = -|q - k|_1``."""

    name = "neg_l1_test"

    @staticmethod
    def pairwise(qp, kp, *params):
        return -(qp.unsqueeze(-2) - kp.unsqueeze(-3)).abs().sum(-1)  # (.., L, S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, P: int, port: int, fn: Callable[..., dict], queue: Any, args: tuple) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=P, timeout=datetime.timedelta(seconds=TIMEOUT_S))
    try:
        res = fn(rank, P, *args)
        if rank == 0:
            queue.put(res)
    except BaseException:  # noqa: BLE001  (sent to the parent as text)
        queue.put({"__error__": f"rank {rank}: {traceback.format_exc()}"})
        raise
    finally:
        dist.destroy_process_group()


def launch(P: int, fn: Callable[..., dict], *args: Any) -> dict:
    """Run ``fn(rank, P, *args)`` on P gloo processes; rank 0's dict comes back."""
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.start_processes(_entry, args=(P, free_port(), fn, queue, args), nprocs=P, join=True, start_method="spawn")
    res = queue.get()
    if "__error__" in res:
        raise RuntimeError(res["__error__"])
    return res


def _max_over_ranks(x: float) -> float:
    t = torch.tensor([x], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)


def _err(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.isnan().any() or b.isnan().any():
        return float("nan")
    return float((a.detach().double() - b.detach().double()).abs().max()) if a.numel() else 0.0


def _score(name: str, H: int, E: int, D: int, gen: torch.Generator) -> tuple[Any, dict]:
    if name == "additive":
        p = {"w_q": torch.randn(H, D, E, generator=gen) * 0.3, "w_k": torch.randn(H, D, E, generator=gen) * 0.3,
             "v": torch.randn(H, D, generator=gen)}
        return "additive", {n: t.requires_grad_() for n, t in p.items()}
    if name == "user":
        return NegL1(), {}
    return name, {}


def ring_case(rank: int, P: int, *, score: str, causal: bool, layout: str, mask: str, B: int = 2, H: int = 2,
              Hk: int = 2, L: int = 16, E: int = 8, dtype: torch.dtype = torch.float32,
              backend: str = "auto") -> dict[str, float]:
    """Max errors (over ranks) of ring_attention against single-process attention(): output, dq, dk, dv
    and the score tensors' gradients summed over ranks."""
    gen = torch.Generator().manual_seed(1234)
    q = torch.randn(B, H, L, E, generator=gen, dtype=dtype)
    k = torch.randn(B, Hk, L, E, generator=gen, dtype=dtype)
    v = torch.randn(B, Hk, L, E, generator=gen, dtype=dtype)
    g = torch.randn(B, H, L, E, generator=gen, dtype=dtype)  # upstream gradient of the output
    sc, params = _score(score, H, E, 6, gen)
    key_mask = None
    if mask == "padding":  # batch 1: every key masked (fully masked rows); batch 0: random padding, key 0 masked
        key_mask = torch.rand(B, L, generator=gen) > 0.3
        key_mask[0, 0] = False
        key_mask[1] = False
    # the single-process reference
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    ref_params = {n: t.detach().clone().requires_grad_() for n, t in params.items()}
    ref = attention(*leaves, score=sc, score_params=ref_params or None, causal=causal,
                    mask=None if key_mask is None else key_mask[:, None, None, :])
    ref_grads = torch.autograd.grad(ref, leaves + list(ref_params.values()), g)
    # the ring
    shards = [shard_sequence(t, 2, layout).clone().requires_grad_() for t in (q, k, v)]
    m = None if key_mask is None else shard_sequence(key_mask, 1, layout)
    my_params = {n: t.detach().clone().requires_grad_() for n, t in params.items()}
    out = ring_attention(*shards, score=sc, score_params=my_params or None, causal=causal, layout=layout, mask=m,
                         backend=backend)
    grads = torch.autograd.grad(out, shards + list(my_params.values()), shard_sequence(g, 2, layout))
    res = {"out": _max_over_ranks(_err(out, shard_sequence(ref, 2, layout)))}
    for name, a, b in zip(("dq", "dk", "dv"), grads[:3], ref_grads[:3]):
        res[name] = _max_over_ranks(_err(a, shard_sequence(b, 2, layout)))
    for name, a, b in zip(my_params, grads[3:], ref_grads[3:]):
        total = a.detach().clone()
        dist.all_reduce(total)  # each rank holds its share; the sum is the single-process gradient
        res["grad_" + name] = _max_over_ranks(_err(total, b))
    res["finite"] = float(all(bool(torch.isfinite(t).all()) for t in (out, *grads)))
    if mask == "padding":
        res["masked_rows_zero"] = float(bool((out[1] == 0).all()))
    return res


def ring_cases(rank: int, P: int, cases: list[tuple[str, dict]]) -> dict[str, Any]:
    """Every case in one world; an exception is recorded (as the same text on every rank) and the next runs."""
    out: dict[str, Any] = {}
    for name, kw in cases:
        fn = kw.pop("fn", ring_case)
        try:
            out[name] = fn(rank, P, **kw)
        except Exception as e:  # noqa: BLE001
            out[name] = {"error": f"{type(e).__name__}: {e}"}
        dist.barrier()
    return out


def roundtrip_case(rank: int, P: int, *, layout: str) -> dict[str, float]:
    x = torch.arange(4 * P * 3, dtype=torch.float64).view(3, 4 * P).requires_grad_()
    s = shard_sequence(x, 1, layout)
    full = unshard_sequence(s, 1, layout)
    (full * torch.arange(full.numel(), dtype=torch.float64).view_as(full)).sum().backward()
    # every rank's copy fed its own loss: the shard's gradient is P times the weights at its positions
    want = P * shard_sequence(torch.arange(x.numel(), dtype=torch.float64).view_as(x), 1, layout)
    return {"equal": float(torch.equal(full.detach(), x.detach())),
            "grad": _max_over_ranks(_err(shard_sequence(x.grad, 1, layout), want))}


def dropout_case(rank: int, P: int, *, score: str, causal: bool, layout: str, p: float = 0.3) -> dict[str, float]:
    """With dropout the backward is still the derivative of the forward (each block redraws the same
    keep-mask): the directional derivative from central differences, every rank moving together along
    its own direction (float64), against sum over ranks of <grad, direction>."""
    gen = torch.Generator().manual_seed(99)
    B, H, L, E = 1, 2, 8 * P, 4
    full = [torch.randn(B, H, L, E, generator=gen, dtype=torch.float64) for _ in range(3)]
    dirs = [torch.randn(B, H, L, E, generator=gen, dtype=torch.float64) for _ in range(3)]
    g = torch.randn(B, H, L, E, generator=gen, dtype=torch.float64)
    sc, params = _score(score, H, E, 3, gen)
    params = {n: t.detach().double() for n, t in params.items()}
    x = [shard_sequence(t, 2, layout) for t in full]
    d = [shard_sequence(t, 2, layout) for t in dirs]
    gs = shard_sequence(g, 2, layout)

    def loss(ts):
        torch.manual_seed(7 + rank)  # the call's dropout seed: the same draw for each evaluation
        out = ring_attention(*ts, score=sc, score_params=params or None, causal=causal, layout=layout, dropout_p=p)
        return (out * gs).sum(), out

    leaves = [t.clone().requires_grad_() for t in x]
    val, out = loss(leaves)
    grads = torch.autograd.grad(val, leaves)
    eps = 1e-6
    with torch.no_grad():
        up = loss([a + eps * b for a, b in zip(x, d)])[0]
        down = loss([a - eps * b for a, b in zip(x, d)])[0]
        no_drop = ring_attention(*x, score=sc, score_params=params or None, causal=causal, layout=layout)
    numeric = torch.tensor([float(up - down) / (2 * eps)], dtype=torch.float64)
    analytic = torch.tensor([float(sum((gr * di).sum() for gr, di in zip(grads, d)))], dtype=torch.float64)
    dist.all_reduce(numeric)
    dist.all_reduce(analytic)
    changed = torch.tensor([float((out.detach() - no_drop).abs().max())], dtype=torch.float64)
    dist.all_reduce(changed, op=dist.ReduceOp.MIN)
    return {"rel": float((numeric - analytic).abs() / analytic.abs().clamp_min(1e-12)), "changed": float(changed)}


def ulysses_case(rank: int, P: int, *, score: str, causal: bool, layout: str, mask: str) -> dict[str, float]:
    """ulysses_attention against single-process attention(): output and input gradients."""
    gen = torch.Generator().manual_seed(5)
    B, H, L, E = 2, 2 * P, 4 * P, 8
    q, k, v, g = (torch.randn(B, H, L, E, generator=gen) for _ in range(4))
    sc, _ = _score(score, H, E, 4, gen)
    key_mask = None
    if mask == "padding":
        key_mask = torch.rand(B, L, generator=gen) > 0.3
        key_mask[1] = False
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = attention(*leaves, score=sc, causal=causal, mask=None if key_mask is None else key_mask[:, None, None, :])
    ref_grads = torch.autograd.grad(ref, leaves, g)
    shards = [shard_sequence(t, 2, layout).clone().requires_grad_() for t in (q, k, v)]
    out = ulysses_attention(*shards, score=sc, causal=causal, layout=layout,
                            mask=None if key_mask is None else shard_sequence(key_mask, 1, layout))
    grads = torch.autograd.grad(out, shards, shard_sequence(g, 2, layout))
    res = {"out": _max_over_ranks(_err(out, shard_sequence(ref, 2, layout)))}
    for name, a, b in zip(("dq", "dk", "dv"), grads, ref_grads):
        res[name] = _max_over_ranks(_err(a, shard_sequence(b, 2, layout)))
    return res


def bad_case(rank: int, P: int, *, which: str) -> dict[str, str]:
    """The error text of one bad input (the same on every rank: none may hang)."""
    x = torch.randn(1, 2, 4 * P, 4)
    qkv = [shard_sequence(x, 2) for _ in range(3)]
    try:
        if which == "length":
            shard_sequence(torch.randn(1, 2, 4 * P + 2, 4), 2)
        elif which == "odd_shard":
            ring_attention(*[t[:, :, :3] for t in qkv], layout="zigzag")
        elif which == "mismatch":
            n = 4 if rank == 0 else 2
            ring_attention(*[t[:, :, :n] for t in qkv])
        elif which == "one_rank_refuses":  # rank 1's own checks fail; rank 0 must not wait for it
            ring_attention(*qkv, causal=True if rank == 0 else "sideways")
        elif which == "one_rank_refuses_ulysses":
            ulysses_attention(*qkv, layout="zigzag" if rank == 0 else "spiral")
        elif which == "mismatch_unshard":
            unshard_sequence(torch.randn(2, 4 if rank == 0 else 6), 1)
        elif which == "bottom_right":
            ring_attention(*qkv, causal="bottom_right")
        elif which == "query_mask":
            ring_attention(*qkv, mask=torch.ones(qkv[0].shape[2], qkv[1].shape[2], dtype=torch.bool))
        elif which == "location":
            ring_attention(*qkv, score="location", score_params={"weight": torch.randn(64, 4)})
        elif which == "causal_lengths":
            ring_attention(qkv[0], qkv[1][:, :, :2], qkv[2][:, :, :2], causal=True)
        elif which == "sdpa_additive":
            ring_attention(*qkv, score="additive", backend="sdpa", score_params={
                "w_q": torch.randn(3, 4), "w_k": torch.randn(3, 4), "v": torch.randn(3)})
        elif which == "ulysses_heads":
            ulysses_attention(*[torch.randn(1, 3, 4, 4) for _ in range(3)])
        elif which == "ulysses_score":
            ulysses_attention(*qkv, score="additive", score_params={
                "w_q": torch.randn(3, 4), "w_k": torch.randn(3, 4), "v": torch.randn(3)})
        elif which == "no_all_to_all":  # a backend without all_to_all (gloo before torch 2.6, say)
            saved = dgroup.COLLECTIVES["gloo"]
            dgroup.COLLECTIVES["gloo"] = saved - {"all_to_all"}
            try:
                ulysses_attention(*qkv)
            finally:
                dgroup.COLLECTIVES["gloo"] = saved
        else:
            raise AssertionError(which)
    except (ValueError, TypeError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    return {"error": ""}


def readme_case(rank: int, P: int) -> dict[str, float]:
    """The README's ring_attention snippet, run as printed on every rank; its gathered output against
    single-process attention() on the same tensors."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "ring_attention(q, k, v," in b]
    ns: dict = {}
    exec(compile(block, "README.md[ring_attention]", "exec"), ns)  # noqa: S102  (the README's own code)
    ref = attention(ns["q_full"], ns["k_full"], ns["v_full"], score="additive", score_params=ns["p"], causal=True,
                    mask=ns["key_allowed"][:, None, None, :])
    return {"out": _max_over_ranks(_err(ns["full"], ref)), "grad": float(ns["q"].grad is not None)}
