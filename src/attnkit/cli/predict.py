"""``attnkit predict RUN_DIR TEXT``: translate one input and show where the model looked.

    attnkit predict runs/numbers "forty-three"
    attnkit predict runs/numbers "forty-three" --plot alignment.png
    attnkit predict runs/translated-digits --plot glimpses.png       # image tasks: test images 0-5
    attnkit predict runs/digits 3 17 --plot maps.png                 # ... or the ones named by index

Prints the output and its alignment as a shaded grid (rows: output tokens,
columns: input tokens, darker = more attention). ``--plot`` saves a heatmap
with the tokens on both axes. Characters the model never saw are an error
that names them. On an image task (digits, translated-digits, cluttered-digits) the inputs are
test-image indices and ``--plot`` draws glimpse paths, spatial maps and channel weights
(:mod:`attnkit.cli._vision`).
"""

from __future__ import annotations

import argparse
import json

from ._common import CliError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="run a trained model on an input and show its alignment", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory written by attnkit train / demo")
    p.add_argument("text", nargs="*", help="input(s) to translate; image tasks: test image indices (default 0-5)")
    p.add_argument("--beam", type=int, default=1, help="beam size (default 1 = greedy)")
    p.add_argument("--length-penalty", type=float, default=1.0, help="beam scores are log p / length**this")
    p.add_argument("--plot", help="save the alignment heatmap(s) to this .png/.svg/.pdf")
    p.add_argument("--layer", type=int, default=None,
                   help="Transformer runs: plot every head of this decoder layer's cross-attention (-1 = last)")
    p.add_argument("--no-grid", action="store_true", help="do not print the terminal grid")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="one JSON object per input: output, tokens, alignment")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import load_run, model_name, resolve_device
    from ..viz import alignment_grid, plot_alignments, plot_heads_grid

    if args.beam < 1:
        raise CliError(f"--beam must be >= 1, got {args.beam}")
    task, model, _ = load_run(args.run_dir, which=args.checkpoint, device=resolve_device(args.device))
    if getattr(task, "kind", None) == "image":
        from ._vision import predict_images

        return predict_images(args, task, model)
    if not args.text:
        raise CliError("give the input(s) to translate: attnkit predict RUN_DIR TEXT ...")
    if not hasattr(task, "predict"):
        raise CliError(
            f"task {task.name!r} is not a sequence-to-sequence task; predict needs one (numbers, dates, g2p, ...)"
        )
    for t in args.text:
        bad = task.src_vocab.unknown(task.normalize(t))
        if bad:
            known = (
                "".join(task.src_vocab.itos[4:]) if task.src_vocab.kind == "char"
                else " ".join(task.src_vocab.itos[4:])
            )
            raise CliError(
                f"{t!r} has {'characters' if task.src_vocab.kind == 'char' else 'tokens'} the model never saw: "
                f"{', '.join(map(repr, bad))}; it knows {known!r}"
            )
    preds = task.predict(model, args.text, beam_size=args.beam, length_penalty=args.length_penalty)
    joiner = "" if task.tgt_vocab.kind == "char" else " "
    items = []
    for text, (toks, align) in zip(args.text, preds):
        src_toks = task.src_vocab.tokens(task.normalize(text))
        rows = list(toks) + ["</s>"] if align.shape[0] > len(toks) else list(toks)
        rows = rows[: align.shape[0]]
        items.append((align, rows, src_toks))
        out = joiner.join(toks)
        if args.json:
            alignment = [[round(x, 4) for x in r] for r in align.tolist()]
            print(json.dumps({"input": text, "output": out, "output_tokens": rows, "input_tokens": src_toks,
                              "alignment": alignment}))
            continue
        print(f"{text} -> {out}")
        if not args.no_grid:
            print(alignment_grid(align, rows, src_toks))
            print()
    if args.plot and args.layer is not None:
        if not hasattr(model, "cross_attention_maps"):
            raise CliError(f"--layer plots the heads of a Transformer; this run holds a {model_name(model)} model")
        path = plot_heads_grid(model, task, args.text, [p[0] for p in preds], args.layer, args.plot)
        if not args.json:
            print(f"attention of every head of layer {args.layer} saved to {path}")
    elif args.plot:
        titles = [f"{t} → {joiner.join(p[0])}" for t, p in zip(args.text, preds)]
        path = plot_alignments(items, args.plot, titles=titles)
        if not args.json:
            print(f"alignment heatmap saved to {path}")
    return 0
