"""Context-parallel modules on a gloo world: MultiHeadAttention and GPT against one process."""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.distributed as dist

from attnkit.distributed import ContextParallel, average_gradients, context_parallel, shard_sequence
from attnkit.distributed.context import all_reduce_metric
from attnkit.models.gpt import GPT
from attnkit.nn.multihead import MultiHeadAttention
from attnkit.nn.positional import RotaryEmbedding

from .workers import _err, _max_over_ranks


def mha_case(rank: int, P: int, *, score: str, layout: str, rope: bool) -> dict[str, float]:
    """MultiHeadAttention(context_parallel=...) on shards of (B, L, D) against the module on the full
    sequence: the output shard and every parameter's gradient (summed over ranks)."""
    torch.manual_seed(3)
    D, H, B, L = 16, 2, 2, 8 * P
    mha = MultiHeadAttention(D, num_heads=H, score=score, positional=RotaryEmbedding(D // H) if rope else None)
    x = torch.randn(B, L, D)
    g = torch.randn(B, L, D)
    allowed = torch.rand(B, L) > 0.25
    allowed[1] = False  # every key of sequence 1 padded: its rows get out_proj(0)
    ref = mha(x, key_allowed=allowed, causal=True).context
    ref_grads = torch.autograd.grad((ref * g).sum(), list(mha.parameters()))
    mha.context_parallel = ContextParallel(layout=layout)
    out = mha(shard_sequence(x, 1, layout), key_allowed=shard_sequence(allowed, 1, layout), causal=True).context
    grads = torch.autograd.grad((out * shard_sequence(g, 1, layout)).sum(), list(mha.parameters()))
    res = {"out": _max_over_ranks(_err(out, shard_sequence(ref, 1, layout)))}
    worst = 0.0
    for a, b in zip(grads, ref_grads):
        a = a.clone()
        dist.all_reduce(a)
        worst = max(worst, _err(a, b))
    res["grads"] = _max_over_ranks(worst)
    return res


def gpt_case(rank: int, P: int, *, positional: str, score: str, layout: str, manager: bool) -> dict[str, float]:
    """GPT's loss and gradients under context parallelism (each rank half of every sequence, gradients
    averaged) against one process on the whole batch."""
    torch.manual_seed(4)
    T = 8 * P
    gpt = GPT(13, block_size=T, num_layers=2, num_heads=2, dim=16, positional=positional, score=score)
    gpt.train()
    batch = SimpleNamespace(x=torch.randint(0, 13, (2, T)), y=torch.randint(0, 13, (2, T)))
    ref_loss, _ = gpt.loss(batch)
    ref_grads = torch.autograd.grad(ref_loss, list(gpt.parameters()))
    if manager:
        with context_parallel(layout=layout):
            loss, metrics = gpt.loss(batch)
    else:
        gpt.context_parallel = ContextParallel(layout=layout)
        loss, metrics = gpt.loss(batch)
    loss.backward()
    average_gradients(gpt)
    worst = max(_err(p.grad, r) for p, r in zip(gpt.parameters(), ref_grads))
    return {"loss": abs(all_reduce_metric(float(loss)) - float(ref_loss)), "grads": _max_over_ranks(worst),
            "tokens": float(metrics["tokens"])}
