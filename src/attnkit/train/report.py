"""The run report: ``report.md`` and its pictures, the same for ``attnkit train`` and ``attnkit demo``.

:func:`write_report` writes, into a run directory that holds a trained model:

- ``report.md``: the task and its data, the model, the budget, the test metrics of the best
  checkpoint, the sections a command adds (the demo's probe), test examples (or, for a language
  model, a sampled continuation of the test text), and the pictures;
- ``curves.png``: the training loss and the validation metrics by step, from ``history.jsonl``
  (:func:`attnkit.viz.curves_figure`; ``attnkit plot RUN_DIR`` draws the same);
- the attention the model learned, by what the model is:
  ``alignments.png`` for sequence-to-sequence models (Bahdanau et al. 2014, arXiv:1409.0473:
  output tokens over input tokens for a few test inputs), ``heads.png`` for a Transformer
  (every cross-attention head of its last decoder layer) and for GPT and BERT (every
  self-attention head of every layer over a test window, rows = layers, columns = heads).

Pictures need matplotlib (``pip install 'attnkit[viz]'``); without it the report is written
all the same and says in one line what to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..core.optional import MissingExtra
from ..viz import alignment_figure, alignment_grid, curves_figure, heads_figure, plot_heads_grid, read_history, style
from .meta import model_config, model_name

__all__ = ["write_report", "metric_rows", "REPORT", "NOT_METRICS"]

#: the report's file name in a run directory
REPORT = "report.md"
#: result fields that describe the run rather than score it
NOT_METRICS = frozenset({"task", "model", "attention", "decoder", "parameters", "steps", "seconds", "run_dir",
                         "train_tokens", "train_seconds", "tokens_per_second", "tokens", "examples", "report",
                         "probe", "pictures"})


def metric_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, formatted value) for every numeric metric of ``result``; rates as percentages.

    >>> metric_rows({"exact_match": 0.5, "chrf": 91.234, "steps": 3, "valid_loss": 1.25})
    [('exact_match', '50.00%'), ('chrf', '91.23'), ('valid_loss', '1.25')]
    """
    rows = []
    for k, v in result.items():
        if k in NOT_METRICS or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        name = k.removeprefix("valid_")
        rate = name in ("exact_match", "accuracy", "acc") or name.endswith("_error_rate")
        rows.append((k, f"{v:.2%}" if rate else f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"))
    return rows


def _label(key: str) -> str:
    """``exact_match`` -> "exact match", ``valid_loss`` -> "loss (validation, best)", ``chrf`` -> "chrF"."""
    name = key.removeprefix("valid_")
    text = "chrF" if name == "chrf" else name.replace("_", " ")
    return f"{text} (validation, best)" if key.startswith("valid_") else text


def _sources(task: Any, n: int) -> list[str]:
    return [e.src for e in task.splits["test"][:n]]


def _alignments(task: Any, model: Any, sources: Sequence[str]) -> Any:
    """The alignment figure of ``sources`` (rows: the model's output tokens and ``</s>``, columns: input tokens)."""
    preds = task.predict(model, list(sources))
    joiner = "" if task.tgt_vocab.kind == "char" else " "
    items, titles = [], []
    for src, (toks, align) in zip(sources, preds):
        rows = (list(toks) + ["</s>"])[: align.shape[0]]
        items.append((align, rows, task.src_vocab.tokens(task.normalize(src))))
        titles.append(f"{src} → {joiner.join(toks)}")
    return alignment_figure(items, titles=titles, cols_per_row=3)


def _window(task: Any, n: int) -> torch.Tensor:
    """The first ``n`` characters of the test split, (1, n) ids."""
    data = task.data["test"]
    return data[: min(n, data.numel())].unsqueeze(0)  # (1, n)


def _self_attention(task: Any, model: Any, n: int) -> Any:
    """Every head of every layer of a GPT or BERT over the first ``n`` test characters."""
    x = _window(task, min(n, model_config(model).get("block_size", n)))
    device = next(model.parameters()).device
    maps = model.attention_maps(x.to(device))  # per layer (1, H, n, n)
    tokens = [task.vocab.itos[i] for i in x[0].tolist()]
    return heads_figure([m[0].cpu() for m in maps], tokens, title=f"{model_name(model)} self-attention")


def _pictures(run_dir: Path, task: Any, model: Any, sources: Sequence[str], window: int) -> list[tuple[str, str]]:
    """(file name, what it shows) of every picture drawn; raises MissingExtra without matplotlib."""
    drawn = []
    events = read_history(run_dir) if (run_dir / "history.jsonl").is_file() else []
    try:
        fig = curves_figure(events, title=f"{model_name(model)} on {task.name}")
    except ValueError:
        fig = None  # nothing trained yet
    if fig is not None:
        style.save_figure(fig, run_dir / "curves.png")
        drawn.append(("curves.png", "training loss and validation metrics by step"))
    if hasattr(task, "predict") and sources:
        style.save_figure(_alignments(task, model, sources), run_dir / "alignments.png")
        drawn.append(("alignments.png", "where the model looked: output tokens (rows) over input tokens (columns)"))
        if hasattr(model, "cross_attention_maps"):
            preds = task.predict(model, list(sources[:2]))
            plot_heads_grid(model, task, list(sources[:2]), [p[0] for p in preds], -1, run_dir / "heads.png")
            drawn.append(("heads.png", "every cross-attention head of the last decoder layer"))
    elif hasattr(model, "attention_maps") and hasattr(task, "data"):
        style.save_figure(_self_attention(task, model, window), run_dir / "heads.png")
        drawn.append(("heads.png", "every self-attention head of every layer (rows: layers, columns: heads) "
                      f"over the first {window} test characters"))
    return drawn


def _examples(task: Any, model: Any, n: int) -> list[str]:
    """A markdown table of the first ``n`` test predictions (sequence-to-sequence tasks)."""
    if not hasattr(task, "predict") or n <= 0:
        return []
    ev = task.evaluate(model, "test", max_examples=n, return_predictions=True)
    lines = ["## Test examples", "", "| input | output | correct |", "|---|---|---|"]
    for s in ev["predictions"]:
        verdict = "yes" if s["correct"] else f"no ({s['refs'][0]})"
        lines.append(f"| {s['src']} | {s['output']} | {verdict} |")
    return [*lines, ""]


def _sample(task: Any, model: Any, n: int) -> list[str]:
    """A language model's continuation of the first 32 test characters: ``n`` sampled characters (T = 0.8, seed 0)."""
    if n <= 0 or not hasattr(model, "new_cache") or not hasattr(task, "data") or not hasattr(task, "vocab"):
        return []
    device = next(model.parameters()).device
    prompt = _window(task, min(32, model.block_size)).to(device)  # (1, 32)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=n, temperature=0.8, generator=gen,
                             suppress_ids=getattr(task, "special_ids", None))
    return ["## Sample", "", f"The first {prompt.shape[1]} test characters, then {n} sampled ones "
            "(temperature 0.8, seed 0; `attnkit generate` for more):", "", "```",
            task.vocab.decode(out[0].tolist()), "```", ""]


def _describe(task: Any, model: Any, result: dict[str, Any]) -> list[str]:
    splits = getattr(task, "splits", None)
    if isinstance(splits, dict):
        data = ", ".join(f"{len(v):,} {k}" for k, v in splits.items()) + " examples (test never seen in training)"
    elif hasattr(task, "data"):
        data = ", ".join(f"{int(v.numel()):,} {k}" for k, v in task.data.items()) + " characters"
    else:
        data = "see the task's documentation"
    cfg = model_config(model)
    parts = [f"`{k}` {cfg[k]}" for k in ("attention", "decoder", "score", "num_layers", "num_heads", "dim",
                                         "hidden_dim") if cfg.get(k) not in (None, "")]
    n = sum(p.numel() for p in model.parameters())
    budget = f"{result.get('steps')} steps in {float(result.get('seconds') or 0):.0f} s"
    if result.get("tokens_per_second"):
        budget += f" ({result['tokens_per_second']:,.0f} tokens/s in training steps)"
    return [f"Task `{task.name}` {dict(getattr(task, 'options', {}))}: {data}.",
            f"Model: `{model_name(model)}`" + (f", {', '.join(parts)}" if parts else "") + f"; {n:,} parameters.",
            f"Training: {budget}.", ""]


def write_report(run_dir: str | Path, task: Any, model: torch.nn.Module, result: dict[str, Any], *,
                 title: str | None = None, sections: Sequence[str] = (), sources: Sequence[str] | None = None,
                 examples: int = 12, window: int = 32) -> dict[str, Any]:
    """Write ``report.md`` and its pictures into ``run_dir``; returns ``{"report", "pictures", "missing"}``.

    ``result`` is what :func:`attnkit.train.train` returned (the test metrics of the best
    weights, which ``model`` holds); ``sections`` are markdown blocks placed after the metrics;
    ``sources`` the inputs whose alignments are drawn (default: the first 4 test inputs);
    ``examples`` how many test predictions are listed (a language model samples
    ``4 * examples + 32`` characters instead); ``window`` how many test characters the
    self-attention heads of a language model are drawn over. ``missing`` is the one-line reason
    the pictures were not drawn (matplotlib not installed), else None.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if examples < 0 or window < 2:
        raise ValueError(f"examples must be >= 0 and window >= 2, got examples={examples}, window={window}")
    was = model.training
    model.eval()
    try:
        if sources is None:
            sources = _sources(task, 4) if hasattr(task, "predict") else []
        lines = [f"# {title or f'attnkit: {model_name(model)} on {task.name}'}", "", *_describe(task, model, result),
                 "| metric (test split, best checkpoint) | value |", "|---|---|"]
        lines += [f"| {_label(k)} | {v} |" for k, v in metric_rows(result)]
        lines.append("")
        for block in sections:
            lines += [block.rstrip(), ""]
        missing = None
        try:
            pictures = _pictures(run_dir, task, model, list(sources), window)
        except MissingExtra as e:
            pictures, missing = [], str(e)
        if sources and hasattr(task, "predict") and not pictures:
            (toks, align), = task.predict(model, [sources[0]])
            rows = (list(toks) + ["</s>"])[: align.shape[0]]
            grid = alignment_grid(align, rows, task.src_vocab.tokens(task.normalize(sources[0])))
            lines += [f"Alignment of {sources[0]!r}:", "", "```", grid, "```", ""]
        lines += _examples(task, model, examples)
        lines += _sample(task, model, 4 * examples + 32)
        lines += ["## Pictures", ""]
        if missing:
            lines += [f"Not drawn: {missing}", ""]
        for name, what in pictures:
            lines += [f"{what}:", "", f"![{Path(name).stem}]({name})", ""]
    finally:
        model.train(was)
    path = run_dir / REPORT
    path.write_text("\n".join(lines), encoding="utf-8")
    return {"report": str(path), "pictures": [str(run_dir / n) for n, _ in pictures], "missing": missing}
