"""``attnkit explore``: an attention explorer in one self-contained HTML file.

    attnkit explore runs/numbers -o report.html
    attnkit explore runs/gpt --text "ROMEO: what light" -o report.html
    attnkit explore --hf PATH --text "The cat sat." --text "A dog ran away." -o report.html
    attnkit explore runs/ram --images 0,5,7 -o report.html

SOURCE is a run directory written by ``attnkit train`` (seq2seq alignments; the heads of every
layer of a Transformer, GPT or BERT; on an image task a RAM's glimpse path step by step, or a
CNN's spatial maps and channel weights per block, for the test images ``--images``), or
``--hf PATH``: a Hugging Face model loaded through attnkit's attention
(``attnkit.integrations.huggingface``). ``--text`` may repeat (a batch; the page has an item
selector). The page opens from disk with no network: head view, model view, matrix heatmap, a
step-by-step panel per query, and gradient x input saliency beside the weights.
``--layers``/``--heads`` keep only some (e.g. ``--layers 0,5``); ``--top-k K`` keeps the K largest
weights of each row (smaller files for long texts).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, Optional, Sequence

from ._common import CliError, set_threads

__all__ = ["add_parser", "run", "hf_explorer_data", "parse_indices"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explore", help="write an interactive attention explorer (one offline HTML file)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="?", help="a run directory written by attnkit train / demo")
    p.add_argument("--hf", metavar="PATH", help="a Hugging Face model directory (instead of a run directory)")
    p.add_argument("--text", action="append", help="an input to show (repeat for a batch; default: test examples)")
    p.add_argument("--images", metavar="INDICES",
                   help="an image run: the test images to show, e.g. 0,5,7 (default: the first 6)")
    p.add_argument("-o", "--out", default="report.html", help="the HTML file to write (default report.html)")
    p.add_argument("--layers", help="only these layers, e.g. 0,3 (default: all)")
    p.add_argument("--heads", help="only these heads, e.g. 0,1,7 (default: all)")
    p.add_argument("--top-k", type=int, help="keep the K largest weights of each row (default: every weight)")
    p.add_argument("--no-values", action="store_true", help="leave the value vectors out (smaller file)")
    p.add_argument("--saliency-token", type=int,
                   help="--hf: saliency of this token's hidden state (default: the mean-pooled embedding)")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    p.add_argument("--json", action="store_true", help="print one JSON object: path, bytes, layers, heads, items")
    p.set_defaults(func=run)


def parse_indices(text: Optional[str], flag: str, count: int, what: str) -> Optional[list[int]]:
    """``"0,2,-1"`` -> ``[0, 2, count - 1]``, each checked against ``count``; None for None."""
    if text is None:
        return None
    try:
        raw = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"{flag} takes numbers separated by ',' (e.g. {flag} 0,2), got {text!r}") from None
    if not raw:
        raise CliError(f"{flag} is empty; give numbers such as {flag} 0,2")
    bad = [i for i in raw if not -count <= i < count]
    if bad:
        raise CliError(f"{flag} {text}: the model has {count} {what} (0..{count - 1}, negative from the end); "
                       f"{', '.join(map(str, bad))} do not exist")
    return sorted({i % count for i in raw})


def _select(data: Any, layers: Optional[str], heads: Optional[str]) -> Any:
    """Keep the layers and heads asked for (run directories: every attention call is a layer)."""
    keep = parse_indices(layers, "--layers", len(data.layers), "attention layers")
    if keep is not None:
        data.layers = [data.layers[i] for i in keep]
    for layer in data.layers:
        H = layer.weights.shape[1]
        hs = parse_indices(heads, "--heads", H, f"heads in {layer.name}")
        if hs is None:
            continue
        names = list(layer.heads or [f"head {h}" for h in range(H)])
        layer.weights = layer.weights[:, hs]  # (B, H_sel, L, S)
        layer.heads = [names[h] for h in hs]
        layer.lse = layer.lse[:, hs] if layer.lse is not None else None
        layer.values = layer.values[:, hs] if layer.values is not None else None
    return data


# -- Hugging Face ---------------------------------------------------------------------------------
def _hf_saliency(model: Any, enc: Any, token: Optional[int]) -> tuple[Any, str]:
    """Gradient x input over the input embeddings (B, 1, L) of ‖mean-pooled output‖ or ‖hidden state of ``token``‖."""
    import torch

    emb = model.get_input_embeddings()
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.enable_grad():
        x = emb(ids).detach().requires_grad_(True)  # (B, L, D)
        out = model(inputs_embeds=x, attention_mask=mask, output_hidden_states=True)
        h = out.hidden_states[-1]  # (B, L, D)
        if token is None:
            m = mask.unsqueeze(-1).to(h.dtype)  # (B, L, 1)
            target = ((h * m).sum(1) / m.sum(1).clamp_min(1)).norm(dim=-1)  # (B,)
            label = "gradient x input of ‖mean-pooled embedding‖"
        else:
            target = h[:, token].norm(dim=-1)  # (B,)
            label = f"gradient x input of ‖hidden state of token {token}‖"
        (g,) = torch.autograd.grad(target.sum(), x)
    return ((g * x).sum(-1) * mask).detach()[:, None, :], label  # (B, 1, L)


_VALUE_NAMES = re.compile(r"\.(\d+)\.(?:.*\.)?(?:value|v_proj)$")


def _hook_values(model: Any, n_heads: int, n_kv: int) -> tuple[dict[int, Any], list[Any]]:
    """Forward hooks on the value projections (``...layer.N....value`` / ``v_proj``) that keep each
    layer's value vectors (B, H, S, D), grouped-query heads repeated; models without such a module
    (a fused qkv projection) keep none, and the step panel then stops at the weights."""
    values: dict[int, Any] = {}
    handles = []
    for name, module in model.named_modules():
        m = _VALUE_NAMES.search(name)
        if m is None or not hasattr(module, "out_features"):
            continue
        layer = int(m.group(1))

        def hook(_m: Any, _inp: Any, out: Any, layer: int = layer) -> None:
            B, S, F = out.shape
            v = out.detach().float().reshape(B, S, n_kv, F // n_kv).transpose(1, 2)  # (B, Hk, S, D)
            values[layer] = v.repeat_interleave(n_heads // n_kv, dim=1)  # (B, H, S, D)

        handles.append(module.register_forward_hook(hook))
    return values, handles


def hf_explorer_data(path: str, texts: Sequence[str], *, layers: Optional[str] = None, heads: Optional[str] = None,
                     saliency_token: Optional[int] = None) -> Any:
    """The :class:`~attnkit.viz.explore.ExplorerData` of ``texts`` through the Hugging Face model at ``path``."""
    import torch

    from ..core.optional import require
    from ..integrations.huggingface import load_model, record
    from ..viz.explore import AttentionLayer, ExplorerData

    bars = require("transformers", purpose="attnkit explore --hf").utils.logging
    shown = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()  # the weights' loading bar: the command's stderr is for its one-line errors
    try:
        model, tok = load_model(path)
    except ValueError as e:
        raise CliError(f"--hf {path}: {str(e).strip().splitlines()[0]}") from None
    finally:
        if shown:
            bars.enable_progress_bar()
    if tok is None:
        raise CliError(f"--hf {path}: the folder holds no tokenizer; save one beside the model "
                       "(tokenizer.save_pretrained(PATH)) so --text can be read")
    model.eval()
    cfg = model.config
    n_layers, n_heads = int(cfg.num_hidden_layers), int(cfg.num_attention_heads)
    lay = parse_indices(layers, "--layers", n_layers, "layers")
    hd = parse_indices(heads, "--heads", n_heads, "heads")
    limit = min(x for x in (getattr(cfg, "max_position_embeddings", None), getattr(tok, "model_max_length", None),
                            100_000) if isinstance(x, int) and x > 0)
    if getattr(tok, "pad_token", None) is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    for i, t in enumerate(texts):
        n = len(tok(t, verbose=False)["input_ids"])
        if n > limit:
            raise CliError(f"--text #{i + 1} has {n} tokens but the model takes at most {limit}; "
                           f"shorten it (or split it into several --text)")
    enc = tok(list(texts), return_tensors="pt", padding=True)
    lengths = enc["attention_mask"].sum(1).tolist()
    if saliency_token is not None and not 0 <= saliency_token < min(lengths):
        raise CliError(f"--saliency-token {saliency_token}: the shortest text has {min(lengths)} tokens "
                       f"(0..{min(lengths) - 1})")
    values, handles = _hook_values(model, n_heads, int(getattr(cfg, "num_key_value_heads", None) or n_heads))
    try:
        with torch.no_grad(), record(model, layers=lay, heads=hd) as rec:
            model(**enc)
    finally:
        for h in handles:
            h.remove()
    toks = [tok.convert_ids_to_tokens(row[:n].tolist()) for row, n in zip(enc["input_ids"], lengths)]
    out_layers = []
    for li, w in sorted(rec.weights.items()):
        heads_of = list(rec.heads.get(li, range(w.shape[1])))
        v = values.get(li)
        out_layers.append(AttentionLayer(
            f"layer {li}", w.detach().float().cpu(), heads=[f"head {h}" for h in heads_of],
            values=v[:, heads_of] if v is not None and v.shape[2] == w.shape[3] else None))
    sal, label = _hf_saliency(model, enc, saliency_token)
    parts = Path(str(path)).resolve().parts
    name = "/".join(parts[-2:]) if parts[-1] in ("model", "models", "weights") else parts[-1]
    return ExplorerData(tokens={"tokens": toks}, layers=out_layers, saliency=sal.float(), saliency_rows=None,
                        saliency_label=label, title=f"{name} ({cfg.model_type})",
                        kind="Hugging Face model", items=[t[:40] + ("…" if len(t) > 40 else "") for t in texts])


def _image_data(args: argparse.Namespace, task: Any, model: Any, name: str) -> Any:
    """An image run's page: the test images ``--images`` (``--text``, ``--layers``, ``--heads`` are refused)."""
    from ._explore_vision import image_explorer_data, image_indices

    for flag, given in (("--text", args.text), ("--layers", args.layers), ("--heads", args.heads),
                        ("--saliency-token", args.saliency_token)):
        if given is not None:
            raise CliError(f"{flag} is for token models; an image run shows test images: --images 0,5,7 "
                           "(its blocks and glimpse steps are chosen on the page)")
    return image_explorer_data(task, model, image_indices(args.images, task.images("test")[0].shape[0]),
                               model_name=name)


# -- the command ------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from ..viz.explore import explore

    set_threads(args.threads)
    if (args.source is None) == (args.hf is None):
        raise CliError("give one source: a run directory (attnkit explore RUN_DIR) or --hf PATH")
    if args.top_k is not None and args.top_k < 1:
        raise CliError(f"--top-k must be >= 1, got {args.top_k}")
    if args.text is not None and not all(t.strip() for t in args.text):
        raise CliError('--text is empty; give some text, e.g. --text "The cat sat on the mat."')
    if args.hf is not None:
        if not args.text:
            raise CliError('--hf needs the input: --text "..." (repeat for a batch)')
        data = hf_explorer_data(args.hf, args.text, layers=args.layers, heads=args.heads,
                                saliency_token=args.saliency_token)
    else:
        from ..train import load_run, model_name, resolve_device
        from ._explore_runs import default_texts, run_explorer_data

        if not Path(args.source).is_dir():
            raise CliError(f"{args.source} is not a run directory; give one written by attnkit train "
                           "(or --hf PATH for a Hugging Face model)")
        task, model, _ = load_run(args.source, which=args.checkpoint, device=resolve_device(args.device))
        if getattr(task, "kind", None) == "image":
            data = _image_data(args, task, model, model_name(model))
        else:
            if args.images is not None:
                raise CliError(f"--images chooses test images of an image run; task {task.name!r} takes --text")
            texts = args.text or default_texts(task, model)
            data = _select(run_explorer_data(task, model, texts, model_name=model_name(model)), args.layers,
                           args.heads)
    page = explore(data, top_k=args.top_k, values=not args.no_values)
    path = page.save(args.out)
    summary = {"path": str(path), "bytes": len(page), "layers": len(data.layers),
               "heads": [int(layer.weights.shape[1]) for layer in data.layers], "items": data.batch_size}
    shows = f"{len(data.layers)} layers"
    if data.images is not None:
        g = data.images.glimpses
        summary.update(blocks=len(data.images.blocks), glimpses=int(g.centres.shape[1]) if g is not None else 0)
        shows = f"{summary['glimpses']} glimpses" if g is not None else f"{summary['blocks']} attention blocks"
    if args.json:
        print(json.dumps(summary))
    else:
        items = f"{data.batch_size} item{'s' if data.batch_size != 1 else ''}"
        print(f"explorer written to {path} ({len(page) / 1e6:.2f} MB, {shows}, {items}); "
              "open it in any browser, no network needed")
    return 0
