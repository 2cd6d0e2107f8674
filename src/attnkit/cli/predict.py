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

BERT runs (``attnkit train shakespeare-mlm --model bert``, ``shakespeare-genre``):
the masked-LM model fills every ``--mask-char`` (default ``_``) of TEXT, the
classifier names the kind of play; ``--plot`` draws every self-attention head of
every layer (or only ``--layer``) over TEXT's characters, rows = layers.

    attnkit predict runs/bert "To be, or not to b_, that is the qu_stion" --plot heads.png
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import CliError, plot_layers

__all__ = ["add_parser", "run", "encoder_predictions"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="run a trained model on an input and show its alignment", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory written by attnkit train / demo")
    p.add_argument("text", nargs="*", help="input(s) to translate; image tasks: test image indices (default 0-5)")
    p.add_argument("--beam", type=int, default=1, help="beam size (default 1 = greedy)")
    p.add_argument("--length-penalty", type=float, default=0.0,
                   help="beam scores are log p / length**this (default 0: the raw log-probability)")
    p.add_argument("--plot", help="save the alignment heatmap(s) to this .png/.svg/.pdf")
    p.add_argument("--layer", type=int, default=None,
                   help="Transformer runs: plot every head of this decoder layer's cross-attention (-1 = last); "
                   "BERT runs: plot only this layer's heads (default: every layer)")
    p.add_argument("--mask-char", default="_",
                   help="BERT masked-LM runs: the character in TEXT that marks a position to fill (default _)")
    p.add_argument("--no-grid", action="store_true", help="do not print the terminal grid")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="one JSON object per input: output, tokens, alignment")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import load_run, model_name, resolve_device
    from ..viz import alignment_grid, plot_alignments, plot_heads_grid
    from ..viz.style import check_path

    if args.beam < 1:
        raise CliError(f"--beam must be >= 1, got {args.beam}")
    if args.plot:
        check_path(args.plot, name="plot")
    task, model, _ = load_run(args.run_dir, which=args.checkpoint, device=resolve_device(args.device))
    if getattr(task, "kind", None) == "image":
        from ._vision import predict_images

        return predict_images(args, task, model)
    if not args.text:
        raise CliError("give the input(s) to translate: attnkit predict RUN_DIR TEXT ...")
    if not hasattr(task, "predict") and hasattr(task, "encode_prompt"):
        if hasattr(model, "new_cache"):  # a language model (GPT): it continues text
            raise CliError(f"{args.run_dir} holds a {model_name(model)} language model, which continues text; use "
                           f"`attnkit generate {args.run_dir} --prompt TEXT` (--plot draws its heads)")
        return _encoder(args, task, model)  # an encoder (BERT): fill masks or classify
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


def encoder_predictions(task: Any, model: Any, text: str, *, mask_char: str = "_") -> dict[str, Any]:
    """What an encoder-only run (BERT) makes of ``text``: ``ids`` (1, L), ``tokens`` and, for a masked-LM,
    ``output`` (``text`` with every ``mask_char`` filled by the most likely character), or for a
    classifier ``label`` and ``probabilities`` (class -> p)."""
    import torch

    from ..data.shakespeare import GENRES, MASK_TOKEN

    block = model.block_size
    mlm = getattr(model, "num_classes", None) is None
    if len(text) > block:
        raise CliError(f"{text[:20]!r}... has {len(text)} characters but the model reads {block} at most; shorten it")
    pieces = list(text)
    if mlm:
        if MASK_TOKEN not in task.vocab.stoi:
            raise CliError(f"this run's vocabulary has no {MASK_TOKEN} token to fill")
        pieces = [MASK_TOKEN if c == mask_char else c for c in pieces]
    bad = [c for c in dict.fromkeys(pieces) if c not in task.vocab.stoi]
    if bad:
        raise CliError(f"{text!r} has characters the model never saw: {', '.join(map(repr, bad))}")
    device = next(model.parameters()).device
    ids = torch.tensor([[task.vocab.stoi[c] for c in pieces]], device=device)  # (1, L)
    with torch.no_grad():
        logits = model(ids).logits
    out: dict[str, Any] = {"ids": ids, "tokens": pieces}
    if mlm:
        best = logits[0].argmax(-1).tolist()  # (L,)
        out["output"] = "".join(task.vocab.itos[best[i]] if p == MASK_TOKEN else p for i, p in enumerate(pieces))
    else:
        probs = torch.softmax(logits[0].float(), -1).tolist()  # (C,)
        names = GENRES if len(probs) == len(GENRES) else [str(i) for i in range(len(probs))]
        out["probabilities"] = dict(zip(names, probs))
        out["label"] = max(out["probabilities"], key=out["probabilities"].get)
    return out


def _encoder(args: argparse.Namespace, task: Any, model: Any) -> int:
    """``predict`` on a BERT run: fill the masks or classify each TEXT; ``--plot`` its heads over the last one."""
    from ..train import model_config
    from ..viz import plot_heads

    if len(args.mask_char) != 1:
        raise CliError(f"--mask-char must be one character, got {args.mask_char!r}")
    results = [encoder_predictions(task, model, t, mask_char=args.mask_char) for t in args.text]
    plot = None
    if args.plot:
        layers = plot_layers(args.layer, model_config(model)["num_layers"])
        last = results[-1]
        maps = model.attention_maps(last["ids"])  # per layer (1, H, L, L)
        plot = plot_heads([maps[i][0].cpu() for i in layers], last["tokens"], args.plot, layers=layers,
                          title="bert self-attention")
    for text, r in zip(args.text, results):
        shown = r.get("output", r.get("label"))
        if args.json:
            row = {"input": text, **{k: v for k, v in r.items() if k not in ("ids", "tokens")}, "plot": plot}
            print(json.dumps(row, ensure_ascii=False))
            continue
        print(f"{text} -> {shown}")
        if "probabilities" in r:
            ranked = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])
            print("  " + ", ".join(f"{k} {v:.1%}" for k, v in ranked))
    if plot and not args.json:
        print(f"attention of every head of {'every layer' if args.layer is None else f'layer {args.layer}'} "
              f"over {args.text[-1]!r} saved to {plot}")
    return 0
