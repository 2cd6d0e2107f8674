"""``attnkit demo`` (what ``make demo`` runs): learn to say numbers in German, and watch it align.

Trains the default task (English number words -> German, held-out numbers
never seen in training) with a Bahdanau decoder and additive attention in a
fixed budget on the CPU, then prints the test exact match and writes a run
directory with the checkpoint, ``report.md`` and its pictures (the same report
``attnkit train`` writes): ``alignments.png`` (several test numbers: the German
"units-und-tens" reordering is the crossing in each heatmap) and ``curves.png``
(training loss and validation by step). ``runs/demo-latest`` points at the
latest demo run (a symlink; a small file naming the run where links fail).

    attnkit demo                      # 300 steps, capped at 3.25 minutes of training
    attnkit predict runs/demo-latest "forty-three"
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from ._common import CliError, json_line, print_metrics, run_dir_error

__all__ = ["add_parser", "run", "DEMO", "LATEST", "number_word_spans", "probe_alignment", "probe_section",
           "point_latest"]

#: the name under runs/ that points at the demo's latest run directory
LATEST = "demo-latest"

#: the demo's task, model and budget (tuned so test exact match >= 95% in a few CPU minutes)
DEMO: dict[str, Any] = {
    "task": "numbers",
    "task_options": {},
    "model": {"attention": "bahdanau", "decoder": "bahdanau"},
    "train": {},
    "minutes": 3.25,
    "probe": 43,
}

#: German number morphemes, longest first (for reading alignments word by word)
_DE = sorted(
    "null eins ein eine zwei drei vier fünf sechs sieben acht neun zehn elf zwölf sech sieb "
    "zwanzig dreißig vierzig fünfzig sechzig siebzig achtzig neunzig und hundert tausend".split(),
    key=len,
    reverse=True,
)


def number_word_spans(text: str, *, lang: str) -> list[tuple[str, int, int]]:
    """(word, start, end) character spans of the number words in ``text``.

    English splits on spaces, hyphens and commas; German compounds are cut
    into morphemes greedily ("dreiundvierzig" -> drei, und, vierzig).
    """
    if lang == "de":
        out, i = [], 0
        while i < len(text):
            m = next((w for w in _DE if text.startswith(w, i)), None)
            if m is None:
                i += 1
                continue
            out.append((m, i, i + len(m)))
            i += len(m)
        return out
    return [(m.group(0), m.start(), m.end()) for m in re.finditer(r"[^\s,\-]+", text)]


def probe_alignment(align: Any, src: str, out: str) -> dict[str, str]:
    """German output word -> the English input word it attends to most (summed weights)."""
    from ..viz import span_alignment

    rows = {w: (a, b) for w, a, b in number_word_spans(out, lang="de") if w != "und" and b <= align.shape[0]}
    cols = {w: (a, b) for w, a, b in number_word_spans(src, lang="en") if w != "and"}
    return span_alignment(align, rows, cols) if rows and cols else {}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job: train English -> German number words and plot the alignments",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="run directory (default runs/demo-TIMESTAMP, then runs/demo-latest points at it)")
    p.add_argument("--minutes", type=float, help=f"training budget (default {DEMO['minutes']})")
    p.add_argument("--steps", type=int, help="step budget (default: the task's tuned steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: the step-by-step RNN ops are too small to share out, "
                   "and one thread is immune to a busy machine)")
    p.add_argument("--force", action="store_true",
                   help="train into a run directory that already holds a run, deleting it")
    p.add_argument("--json", action="store_true", help="print the final metrics as one JSON object on the last line "
                   "(on failure: one JSON object with the error)")
    p.set_defaults(func=run)


def _examples(task: Any, n: int) -> list[str]:
    """Test sources whose German reorders (two-digit tens + units), then a few longer ones."""
    tests = [e.src for e in task.splits["test"]]
    crossing = [s for s in tests if re.fullmatch(r"[a-z]+ty-[a-z]+", s)]
    longer = [s for s in tests if "hundred" in s and "-" in s]
    return (crossing[: n - 1] + longer[:1] + tests)[:n]


def probe_section(probe: dict[str, Any]) -> str:
    """The report's markdown block for the probe: its word-level alignment and its terminal grid."""
    lines = [f"## Probe: {probe['input']!r} -> {probe['output']!r}", ""]
    if probe["words"]:
        lines += ["Word-level argmax of the alignment (summed over each word's characters):", ""]
        lines += [f"- `{de}` attends to `{en}`" for de, en in probe["words"].items()]
    lines += ["", "```", probe["grid"], "```"]
    return "\n".join(lines)


def point_latest(out: Path, *, name: str = LATEST) -> Path:
    """Make ``out.parent / name`` point at the run directory ``out``: a relative symlink, or where links
    cannot be made (some Windows and network file systems) a small file holding the run's name.

    The new pointer replaces the old one in one rename, so two demos finishing at once leave one of
    them, never a broken pointer. ``attnkit predict runs/demo-latest ...`` reads either kind
    (:func:`attnkit.train.resolve_run_dir`). A real directory of that name is left alone (CliError).
    """
    link = out.parent / name
    if link.is_dir() and not link.is_symlink():
        raise CliError(f"{link} is a directory, not the demo's pointer to its latest run; move it away")
    tmp = out.parent / f".{name}.{os.getpid()}"
    try:
        tmp.symlink_to(out.name, target_is_directory=True)
    except (OSError, NotImplementedError):
        tmp.write_text(out.name + "\n", encoding="utf-8")
    os.replace(tmp, link)
    return link


def run(args: argparse.Namespace) -> int:
    import torch

    from ..core.optional import require_all
    from ..data import get_task
    from ..data.numbers import number_words
    from ..models import build_model, model_config_for_task
    from ..presets import model_options, train_options
    from ..train import default_run_dir, train
    from ..train.lock import RunDirectoryError
    from ..train.report import write_report
    from ..viz import alignment_grid

    if args.threads < 1:
        raise CliError(f"--threads must be >= 1, got {args.threads}")
    if args.steps is not None and args.steps < 1:
        raise CliError(f"--steps must be >= 1, got {args.steps} (leave it out for the demo's budget)")
    if args.minutes is not None and not args.minutes > 0:
        raise CliError(f"--minutes must be > 0, got {args.minutes}")
    require_all("num2words", "matplotlib", purpose="the demo (its number words and alignments.png)")  # before training
    torch.set_num_threads(args.threads)
    task = get_task(DEMO["task"], seed=args.seed, **DEMO["task_options"])
    torch.manual_seed(args.seed)
    model = build_model(model_config_for_task("seq2seq", task, **model_options(task.name, "seq2seq", **DEMO["model"])))
    out = Path(args.out) if args.out else default_run_dir("demo")
    minutes = args.minutes if args.minutes is not None else (None if args.steps is not None else DEMO["minutes"])
    if not args.json:
        n = sum(p.numel() for p in model.parameters())
        print(f"attnkit demo: {task.options['src_lang']} -> {task.options['tgt_lang']} number words, "
              f"{len(task.splits['train'])} training numbers, {len(task.splits['test'])} held out")
        print(f"model: seq2seq, bahdanau decoder, additive attention, {n:,} parameters; run directory {out}")
    steps = args.steps if args.steps is not None else train_options(task.name, "seq2seq")["steps"]
    try:
        result = train(task, model, steps=steps, minutes=minutes, seed=args.seed, device=args.device, out_dir=out,
                       force=args.force, progress=False if args.json else None, **DEMO["train"])
    except RunDirectoryError as e:
        raise run_dir_error(e) from None
    model.eval()
    src = number_words(DEMO["probe"], lang=task.options["src_lang"])
    [(toks, align)] = task.predict(model, [src])
    out_text = "".join(toks)
    rows = (list(toks) + ["</s>"])[: align.shape[0]]
    grid = alignment_grid(align, rows, list(src))
    words = probe_alignment(align, src, out_text)
    probe = {"input": src, "output": out_text, "words": words, "grid": grid}
    title = "attnkit demo: English -> German number words with Bahdanau attention"
    written = write_report(out, task, model, result, title=title, sections=[probe_section(probe)],
                           sources=[src, *_examples(task, 4)])
    latest = None
    if args.out is None:
        try:
            latest = point_latest(out)
        except (CliError, OSError) as e:  # the run is complete; only its pointer is missing
            print(f"note: runs/{LATEST} not updated: {e}", file=sys.stderr)
    result["probe"] = {"input": src, "output": out_text, "alignment": words}
    if args.json:
        print(json_line(result))
        return 0
    print()
    print(f"{src} -> {out_text}")
    print(grid)
    if words:
        print("  " + ", ".join(f"{de} <- {en}" for de, en in words.items()))
    print()
    print_metrics(result, title="held-out test numbers (never seen in training):")
    pictures = ", ".join(Path(p).name for p in written["pictures"])
    print(f"wrote {out}/: best.json (checkpoint), report.md, {pictures}")
    if latest is not None:
        print(f"{latest} -> {out.name}")
    print(f"try: attnkit predict {latest or out} \"seven hundred and twenty-one\"")
    return 0
