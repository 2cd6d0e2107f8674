"""Baby GPT on character Shakespeare: attnkit's GPT against a plain PyTorch (nanoGPT-style, torch SDPA) model.

nanoGPT's laptop-CPU recipe for ``shakespeare_char`` (Karpathy, nanoGPT README):
4 layers, 4 heads, 128 dims, block 64, batch 12, 2000 iterations, dropout 0.0,
AdamW lr 1e-3 (betas 0.9/0.99, weight decay 0.1 on matrices, warm-up 100, cosine to
1e-4, grad clip 1.0) reaches validation loss about 1.88 on tiny-shakespeare.

Three trainings run in lockstep (one step of each per iteration, on the same batches,
same init seed), so a noisy shared CPU slows all alike:

* ``attnkit GPT``: attnkit's model with attnkit's training step (``attnkit.train``:
  ``make_optimizer``'s fused AdamW, clipping over a parameter list made once);
* ``attnkit GPT, nanoGPT step``: the same model with nanoGPT's step (its
  ``configure_optimizers``: torch's default AdamW on CPU, fused on CUDA only;
  ``clip_grad_norm_(model.parameters())``): the model alone against the peer;
* ``plain PyTorch + SDPA``: nanoGPT's model.py (condensed below) with nanoGPT's step.

Printed: validation loss on our split (``attnkit.data.shakespeare``) at the end (and
every ``--eval-every``), training tokens/s (median, p10/p90 of per-step times after 3
warm-up steps, ``attnkit.bench.timing.Summary``), and each attnkit row's ratio to the peer. Writes JSON to ``--out``.

    .venv/bin/python benchmarks/bench_gpt.py                 # the full 2000 iterations
    .venv/bin/python benchmarks/bench_gpt.py --iters 50      # a smoke run
    .venv/bin/python benchmarks/bench_gpt.py --models attnkit,plain   # two of the three
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnkit.bench.timing import Summary
from attnkit.data.shakespeare import ShakespeareTask
from attnkit.models import GPT
from attnkit.train import make_optimizer


# ---------------------------------------------------------------------------------------------
# the peer: nanoGPT's model.py, condensed (fused QKV, torch SDPA, tied embeddings)
# ---------------------------------------------------------------------------------------------
class PlainSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, H, T, E)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, H, T, E)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, H, T, E)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, E)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))  # (B, T, C)


class PlainBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = PlainSelfAttention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim)
        self.c_fc = nn.Linear(dim, 4 * dim)
        self.c_proj = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x))))


class PlainGPT(nn.Module):
    def __init__(self, vocab: int, *, block_size: int, layers: int, heads: int, dim: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(block_size, dim)
        self.h = nn.ModuleList(PlainBlock(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers))
            elif p.dim() == 2:
                nn.init.normal_(p, std=0.02)
            else:
                nn.init.zeros_(p) if name.endswith("bias") else nn.init.ones_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))  # (B, T, C)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, V)

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        logits = self(batch.x)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), batch.y.reshape(-1))
        return loss, {"loss": float(loss.detach()), "tokens": batch.x.numel()}


# ---------------------------------------------------------------------------------------------
def nanogpt_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """nanoGPT's grouping: decay 2-D weights, not biases / norms."""
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def configure_adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """nanoGPT's ``configure_optimizers``: fused AdamW on CUDA only, torch's default elsewhere."""
    fused = next(model.parameters()).is_cuda
    return torch.optim.AdamW(nanogpt_groups(model, weight_decay), lr=lr, betas=(0.9, 0.99),
                             **({"fused": True} if fused else {}))


class Trainer:
    """One model and its training step: nanoGPT's (``attnkit_step=False``) or attnkit's."""

    def __init__(self, model: nn.Module, *, lr: float, attnkit_step: bool) -> None:
        self.model = model
        if attnkit_step:  # what attnkit.train.train does: make_optimizer, clipping over a list made once
            self.opt = make_optimizer(nanogpt_groups(model, 0.1), lr=lr, betas=(0.9, 0.99))
            self.params = [p for p in model.parameters() if p.requires_grad]
        else:
            self.opt = configure_adamw(model, lr, 0.1)
            self.params = None

    def step(self, batch, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr
        loss, _ = self.model.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params if self.params is not None else self.model.parameters(), 1.0)
        self.opt.step()


def lr_at(it: int, *, lr: float, min_lr: float, warmup: int, decay_iters: int) -> float:
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    ratio = (it - warmup) / max(1, decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def summarize(times: list[float], tokens: int) -> dict:
    """Step-time median and p10/p90 in seconds, and the tokens/s they give (p10 of tokens/s is p90 of time)."""
    s = Summary.of(times)
    return {"median_s": s.median, "p10_s": s.p10, "p90_s": s.p90, "tokens_per_s": tokens / s.median,
            "tokens_per_s_p10": tokens / s.p90, "tokens_per_s_p90": tokens / s.p10}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-tokens", type=int, default=65536, help="validation characters scored (default 65536)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--models", default="attnkit,attnkit-nanogpt-step,plain",
                    help="comma list of attnkit (attnkit's model and training step), attnkit-nanogpt-step "
                         "(attnkit's model, nanoGPT's step), plain (nanoGPT's model and step)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/bench_gpt.json"))
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    task = ShakespeareTask(block_size=args.block_size, eval_tokens=args.eval_tokens)
    V = len(task.vocab)
    names = {"attnkit": "attnkit GPT", "attnkit-nanogpt-step": "attnkit GPT, nanoGPT step",
             "plain": "plain PyTorch + SDPA"}
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in names]
    if unknown or not wanted:
        ap.error(f"--models: unknown {unknown}; choose from {', '.join(names)}")
    trainers: dict[str, Trainer] = {}
    for key in wanted:
        torch.manual_seed(args.seed)
        if key == "plain":
            model = PlainGPT(V, block_size=args.block_size, layers=args.layers, heads=args.heads, dim=args.dim)
        else:
            model = GPT(V, block_size=args.block_size, num_layers=args.layers, num_heads=args.heads, dim=args.dim,
                        dropout=0.0)
        trainers[names[key]] = Trainer(model, lr=args.lr, attnkit_step=key == "attnkit")
    models = {n: t.model for n, t in trainers.items()}
    times: dict[str, list[float]] = {n: [] for n in models}
    history: list[dict] = []
    gen = torch.Generator().manual_seed(args.seed)
    stream = task.batches("train", args.batch_size, generator=gen)
    tokens = args.batch_size * args.block_size
    print(f"# baby GPT: {args.layers} layers, {args.heads} heads, {args.dim} dims, block {args.block_size}, "
          f"batch {args.batch_size}, {args.iters} iters, {args.threads} threads; vocab {V}, "
          f"train {task.split_size('train'):,} chars, "
          f"valid scored on {min(args.eval_tokens, task.split_size('valid')):,}")
    for n, m in models.items():
        print(f"#   {n}: {sum(p.numel() for p in m.parameters()):,} parameters")
    t_start = time.perf_counter()
    for it in range(args.iters + 1):
        if it % args.eval_every == 0 or it == args.iters:
            row = {"iter": it}
            for n, m in models.items():
                row[n] = task.evaluate(m, "valid")["loss"]
            history.append(row)
            print(f"iter {it:5d}  " + "  ".join(f"{n}: val {row[n]:.4f}" for n in models), flush=True)
        if it == args.iters:
            break
        batch = next(stream)
        lr = lr_at(it, lr=args.lr, min_lr=args.lr / 10, warmup=100, decay_iters=args.iters)
        for n, t in trainers.items():
            t0 = time.perf_counter()
            t.step(batch, lr)
            times[n].append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_start

    result = {"config": vars(args) | {"out": str(args.out)}, "vocab_size": V, "wall_s": wall, "history": history,
              "models": {}}
    print(f"\n{'model':26s} {'val loss':>9s} {'tokens/s':>10s} {'p10':>9s} {'p90':>9s} {'ms/step':>8s}")
    for n in models:
        s = summarize(times[n][3:], tokens)
        s["val_loss"] = history[-1][n]
        result["models"][n] = s
        print(f"{n:26s} {s['val_loss']:9.4f} {s['tokens_per_s']:10.0f} {s['tokens_per_s_p10']:9.0f} "
              f"{s['tokens_per_s_p90']:9.0f} {1000 * s['median_s']:8.2f}")
    peer = result["models"].get(names["plain"])
    if peer is not None:
        result["ratio_tokens_per_s"] = {}
        for n, r in result["models"].items():
            if n == names["plain"]:
                continue
            ratio = r["tokens_per_s"] / peer["tokens_per_s"]
            result["ratio_tokens_per_s"][n] = ratio
            print(f"ratio {n} / peer tokens/s: {ratio:.3f}   (val loss {r['val_loss']:.4f} vs {peer['val_loss']:.4f})")
        print("nanoGPT's reference on tiny-shakespeare: val loss ~1.88")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
