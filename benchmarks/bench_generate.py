"""KV-cached against uncached generation with attnkit's GPT, at contexts of 64, 256 and 1,024 tokens.

Uncached decoding (nanoGPT's ``generate``) runs the whole context through the model for every
new character. The KV cache keeps each layer's keys and values, so a step runs only the new
character, while the context fits in the block; past ``block_size`` nanoGPT's crop slides the
window, every position shifts and both paths run the window (see ``GPT.step``).

For each block size C (the baby GPT's sizes: 4 layers, 4 heads, 128 dims; C = 64 is the model
``attnkit train shakespeare --model gpt`` trains) it measures, paired (cached and uncached
alternate call by call in this process, :func:`attnkit.bench.timing.time_paired`):

* ``generate``: the README's ``attnkit generate --max-new-tokens 300`` after a 6-character prompt
  (at C = 64 the window is full after 58 characters; at 256 after 250; at 1,024 never);
* ``step``: one new token at a context of C - 1 tokens (one cached step against a recompute of C).

It checks that both paths give the same tokens (greedy, and sampled with the same generator),
prints the ratio (uncached / cached time: > 1 means the cache is faster) and the load average,
and writes JSON. ``--run RUN_DIR`` adds a row for a trained GPT.

    .venv/bin/python benchmarks/bench_generate.py                  # 1 thread, 5 paired repeats
    .venv/bin/python benchmarks/bench_generate.py --threads 2 --contexts 64,256
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from attnkit.bench.timing import Summary, time_paired
from attnkit.models import GPT

PROMPT = [1, 2, 3, 4, 5, 6]  # 6 tokens, the length of "ROMEO:"


def stats(s: Summary) -> dict:
    return {"median_s": s.median, "p10_s": s.p10, "p90_s": s.p90}


def pair(model: GPT, prompt: torch.Tensor, new: int, warmup: int, repeats: int) -> dict:
    """Cached vs uncached generation of ``new`` tokens after ``prompt``, paired; same-token checks."""
    def run(cache: bool):  # noqa: ANN202
        return lambda: model.generate(prompt, max_new_tokens=new, temperature=0.0, use_cache=cache)

    cached, uncached = time_paired(run(True), run(False), warmup=warmup, repeats=repeats)
    greedy = torch.equal(run(True)(), run(False)())
    sampled = [model.generate(prompt, max_new_tokens=new, temperature=1.0, top_k=20, top_p=0.95, use_cache=c,
                              generator=torch.Generator().manual_seed(1)) for c in (True, False)]
    return {"new_tokens": new, "cached": stats(cached), "uncached": stats(uncached),
            "ratio": uncached.median / cached.median, "same_tokens_greedy": greedy,
            "same_tokens_sampled": bool(torch.equal(*sampled)), "load_avg": os.getloadavg()}


@torch.no_grad()
def step_pair(model: GPT, warmup: int, repeats: int) -> dict:
    """One new token at a context of block_size - 1: a cached step against recomputing the block."""
    C = model.block_size
    ids = torch.randint(0, model.vocab_size, (1, C), generator=torch.Generator().manual_seed(0))
    cache = model.new_cache(1)
    model(ids[:, :-1], cache=cache)

    def cached() -> torch.Tensor:
        for c in cache:
            c.length = C - 1  # the same C - 1 positions each call; the new one is overwritten
        return model(ids[:, -1:], cache=cache, last_only=True).logits

    def uncached() -> torch.Tensor:
        return model(ids, last_only=True).logits

    torch.testing.assert_close(cached(), uncached(), rtol=1e-4, atol=1e-4)
    a, b = time_paired(cached, uncached, warmup=warmup, repeats=repeats * 10)
    return {"context": C, "cached": stats(a), "uncached": stats(b), "ratio": b.median / a.median,
            "load_avg": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--contexts", default="64,256,1024", help="block sizes C (default 64,256,1024)")
    ap.add_argument("--new", type=int, default=300, help="characters to generate (default 300, the README's)")
    ap.add_argument("--run", help="also measure a trained GPT (a run directory of attnkit train)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=79, help="vocabulary (default 79, the Shakespeare task's)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, attnkit generate's)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/bench_generate.json"))
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    models: list[tuple[str, GPT]] = []
    for C in (int(c) for c in args.contexts.split(",") if c):
        torch.manual_seed(0)
        models.append((f"baby GPT, block {C}", GPT(args.vocab, block_size=C, num_layers=args.layers,
                                                   num_heads=args.heads, dim=args.dim).eval()))
    if args.run:
        from attnkit.train import load_run

        _, trained, _ = load_run(args.run)
        models.append((f"{args.run} (block {trained.block_size})", trained.eval()))
    print(f"# {args.threads} thread(s), {args.new} new tokens after a {len(PROMPT)}-token prompt, warm-up "
          f"{args.warmup}, {args.repeats} paired repeats; load average {os.getloadavg()}")
    print(f"\n{'model':34s} {'what':22s} {'cached s':>9s} {'uncached s':>10s} {'uncached/cached':>15s}  same tokens")
    rows = []
    ok = True
    for name, model in models:
        prompt = torch.tensor([PROMPT])
        g = pair(model, prompt, args.new, args.warmup, args.repeats)
        s = step_pair(model, args.warmup, args.repeats)
        ok = ok and g["same_tokens_greedy"] and g["same_tokens_sampled"]
        print(f"{name:34s} {f'generate {args.new}':22s} {g['cached']['median_s']:9.3f} "
              f"{g['uncached']['median_s']:10.3f} {g['ratio']:14.2f}x  {g['same_tokens_greedy']}/"
              f"{g['same_tokens_sampled']}")
        what = f"one step at {s['context']}"
        print(f"{'':34s} {what:22s} {s['cached']['median_s'] * 1e3:7.2f}ms "
              f"{s['uncached']['median_s'] * 1e3:8.2f}ms {s['ratio']:14.2f}x")
        rows.append({"model": name, "block_size": model.block_size, "generate": g, "step": s})
    result = {"config": vars(args) | {"out": str(args.out)}, "rows": rows, "load_avg_end": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nload average at the end {os.getloadavg()}; wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
