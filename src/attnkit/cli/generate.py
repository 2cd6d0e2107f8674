"""``attnkit generate RUN_DIR --prompt TEXT``: sample text from a trained language model (GPT).

    attnkit train shakespeare --model gpt --steps 2000 --out runs/gpt
    attnkit generate runs/gpt --prompt "ROMEO:" --max-new-tokens 300
    attnkit generate runs/gpt --prompt "ROMEO:" --temperature 0 --plot heads.png

Decoding: ``--temperature 0`` is greedy; otherwise softmax(logits / T) sampled
after the ``--top-k`` most likely characters and the ``--top-p`` nucleus are
kept. The KV cache is on unless ``--no-cache`` (same tokens, slower). ``--seed``
makes sampling repeatable; ``--threads`` sets torch's CPU threads (default 1,
the steadiest on a shared machine). ``--plot FILE`` draws the attention of every head of
every layer (or only ``--layer``) over the last ``--plot-chars`` characters as a
grid of heatmaps, one row per layer and one column per head (in each: row, the
character whose next character is predicted; column, the character it looks at).

Characters outside the model's vocabulary, a prompt longer than the model's
block size, and an encoder-only run (BERT) are errors that say what to do.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ._common import CliError, plot_layers, set_threads

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate",
                       help="sample text from a trained language model (attnkit train shakespeare --model gpt)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory written by attnkit train")
    p.add_argument("--prompt", default="\n", help='text to continue (default: a newline), e.g. "ROMEO:"')
    p.add_argument("--max-new-tokens", type=int, default=500, help="characters to generate (default 500)")
    p.add_argument("--temperature", type=float, default=0.8, help="softmax temperature; 0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely characters only")
    p.add_argument("--top-p", type=float, default=None, help="sample within the smallest set of probability >= p")
    p.add_argument("--num-samples", type=int, default=1, help="independent continuations (default 1)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole context every step (no KV cache)")
    p.add_argument("--plot", help="save the attention of every head (every layer, or --layer) to this .png/.svg/.pdf")
    p.add_argument("--layer", type=int, default=None,
                   help="plot only this layer, 0-based; negative counts from the end (default: every layer)")
    p.add_argument("--plot-chars", type=int, default=40, help="plot the last N characters (default 40)")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (default 1: one new character's operations are too small to share "
                        "out, and a second thread waits on a busy machine; more can help --num-samples 16 or a "
                        "large model)")
    p.add_argument("--json", action="store_true", help="print one JSON object: prompt, samples, tokens/s")
    p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    if args.max_new_tokens < 0:
        raise CliError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if args.num_samples < 1:
        raise CliError(f"--num-samples must be >= 1, got {args.num_samples}")
    if args.plot_chars < 2:
        raise CliError(f"--plot-chars must be >= 2, got {args.plot_chars}")
    if not args.prompt:
        raise CliError('--prompt is empty; give at least one character, e.g. --prompt "ROMEO:"')


def run(args: argparse.Namespace) -> int:
    import torch

    from ..train import load_run, model_config, model_name, resolve_device
    from ..viz import plot_heads

    _check_args(args)
    set_threads(args.threads)
    task, model, meta = load_run(args.run_dir, which=args.checkpoint, device=resolve_device(args.device))
    name = model_name(model)
    if not hasattr(task, "encode_prompt"):
        raise CliError(
            f"{args.run_dir} holds a {name} model for the {task.name!r} task, which translates inputs; "
            f"use `attnkit predict {args.run_dir} TEXT` (generate needs a language model: "
            "attnkit train shakespeare --model gpt)"
        )
    if not hasattr(model, "new_cache"):
        raise CliError(
            f"{args.run_dir} holds a {name} model, an encoder-only (bidirectional) model that cannot generate; "
            f"`attnkit predict {args.run_dir} TEXT` fills its masks (or classifies) and plots its heads, or "
            f"train a decoder with `attnkit train shakespeare --model gpt` and generate from that run"
        )
    ids = task.encode_prompt(args.prompt)
    block = model.block_size
    if len(ids) > block:
        raise CliError(
            f"the prompt has {len(ids)} characters but the model's context (block_size) is {block}; "
            f"shorten it to its last {block} characters"
        )
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(args.seed)
    prompt = torch.tensor([ids] * args.num_samples, dtype=torch.long, device=next(model.parameters()).device)
    t0 = time.perf_counter()
    out = model.generate(prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, use_cache=not args.no_cache, generator=gen,
                         suppress_ids=getattr(task, "special_ids", None))
    seconds = time.perf_counter() - t0
    texts = [task.vocab.decode(row.tolist()) for row in out]
    rate = args.max_new_tokens * args.num_samples / max(seconds, 1e-9)
    plot_path = None
    if args.plot:
        layers = plot_layers(args.layer, model_config(model)["num_layers"])
        window = out[:1, -min(args.plot_chars, block, out.shape[1]) :]  # (1, N)
        maps = model.attention_maps(window)
        tokens = [task.vocab.itos[i] for i in window[0].tolist()]
        plot_path = plot_heads([maps[i][0].cpu() for i in layers], tokens, args.plot, layers=layers,
                               title=f"{name} self-attention")  # (layers, H, N, N): a layers x heads grid
    if args.json:
        print(json.dumps({"prompt": args.prompt, "samples": texts, "new_tokens": args.max_new_tokens,
                          "seconds": round(seconds, 3), "tokens_per_s": round(rate, 1), "cached": not args.no_cache,
                          "threads": torch.get_num_threads(), "plot": plot_path}))
        return 0
    for i, t in enumerate(texts):
        if len(texts) > 1:
            print(f"--- sample {i + 1} ---")
        print(t)
    print(f"[{args.max_new_tokens * args.num_samples} characters in {seconds:.2f} s, {rate:,.0f} chars/s, "
          f"{'KV cache' if not args.no_cache else 'no cache'}, {torch.get_num_threads()} thread(s)]", file=sys.stderr)
    if plot_path:
        print(f"attention of every head of {'every layer' if args.layer is None else f'layer {layers[0]}'} "
              f"saved to {plot_path}", file=sys.stderr)
    return 0
