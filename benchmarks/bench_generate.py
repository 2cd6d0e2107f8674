"""KV-cached against uncached generation with attnkit's GPT: same tokens, how much faster.

Uncached decoding (nanoGPT's ``generate``) runs the whole context through the
model for every new character: O(n²) work for n characters. The KV cache keeps
each layer's keys and values, so a step only runs the new character: O(n).
Both paths are timed on the same model, prompt and seed, in the same run, and
the generated tokens are compared (greedy, and sampled with the same generator).

Default model: the baby GPT's sizes (4 layers, 4 heads, 128 dims) with a
1024-character context, so 512 new characters fit without sliding the window.
``--run RUN_DIR`` loads a trained GPT instead. CPU protocol: fp32, warm-up then
repeats, median and p10/p90.

    .venv/bin/python benchmarks/bench_generate.py                  # 512 characters
    .venv/bin/python benchmarks/bench_generate.py --new 128 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from attnkit.models.gpt import GPT


def timed(fn, warmup: int, repeats: int) -> tuple[list[float], torch.Tensor]:
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def stats(times: list[float]) -> dict:
    qs = statistics.quantiles(times, n=10) if len(times) > 1 else [times[0]] * 9
    return {"median_s": statistics.median(times), "p10_s": qs[0], "p90_s": qs[-1]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new", type=int, default=512, help="characters to generate (default 512)")
    ap.add_argument("--prompt", default="ROMEO:")
    ap.add_argument("--run", help="a run directory of a trained GPT (default: a randomly initialised baby GPT)")
    ap.add_argument("--block-size", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--positional", default="learned")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/bench_generate.json"))
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.run:
        from attnkit.train import load_run

        task, model, _ = load_run(args.run)
        ids = task.encode_prompt(args.prompt)
    else:
        from attnkit.data.shakespeare import ShakespeareTask

        task = ShakespeareTask(plays=("romeo",), block_size=64)
        torch.manual_seed(0)
        model = GPT(len(task.vocab), block_size=args.block_size, num_layers=args.layers, num_heads=args.heads,
                    dim=args.dim, positional=args.positional)
        ids = task.encode_prompt(args.prompt)
    model.eval()
    prompt = torch.tensor([ids])
    print(f"# GPT {model.config['num_layers']} layers, {model.config['num_heads']} heads, {model.config['dim']} dims, "
          f"block {model.block_size}; prompt {args.prompt!r}, {args.new} new characters, {args.threads} threads, "
          f"warm-up {args.warmup}, {args.repeats} repeats")

    rows = {}
    outs = {}
    for name, cache in (("KV cache", True), ("no cache", False)):
        times, out = timed(lambda: model.generate(prompt, max_new_tokens=args.new, temperature=0.0, use_cache=cache),
                           args.warmup, args.repeats)
        rows[name] = stats(times)
        rows[name]["chars_per_s"] = args.new / rows[name]["median_s"]
        outs[name] = out
    same_greedy = bool(torch.equal(outs["KV cache"], outs["no cache"]))
    sampled = [model.generate(prompt, max_new_tokens=args.new, temperature=1.0, top_k=20, top_p=0.95,
                              use_cache=c, generator=torch.Generator().manual_seed(1)) for c in (True, False)]
    same_sampled = bool(torch.equal(*sampled))
    print(f"\n{'path':10s} {'median s':>9s} {'p10':>8s} {'p90':>8s} {'chars/s':>9s}")
    for name, r in rows.items():
        print(f"{name:10s} {r['median_s']:9.3f} {r['p10_s']:8.3f} {r['p90_s']:8.3f} {r['chars_per_s']:9.1f}")
    speedup = rows["no cache"]["median_s"] / rows["KV cache"]["median_s"]
    print(f"speed-up (no cache / KV cache): {speedup:.2f}x   same tokens: greedy {same_greedy}, sampled {same_sampled}")
    print("sample:", repr(task.vocab.decode(sampled[0][0].tolist())[:120]))
    result = {"config": vars(args) | {"out": str(args.out)}, "paths": rows, "speedup": speedup,
              "same_tokens_greedy": same_greedy, "same_tokens_sampled": same_sampled}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0 if same_greedy and same_sampled else 1


if __name__ == "__main__":
    sys.exit(main())
