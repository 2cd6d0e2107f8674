"""``attnkit list``: every registered attention mechanism with its paper, its
formula and the backends that can run it.

The backends column is not declared by hand: each mechanism is built at a
tiny size and called once on sample inputs (its ordinary call, no weights
requested); every ``attnkit.functional.attention`` call it makes is recorded,
and a backend is listed when ``not_supported_reasons`` is empty for all of
them (CPU, float32). Vision and sigma-pi layers make no attention() call
("-"). ``--reasons`` prints why each other backend refuses.

Below it, the table of what ``attnkit train --attention NAME`` means for each kind
of model (:func:`attnkit.presets.attention_table`): a mechanism for the RNN
seq2seq model, a score (or local windows) for the Transformer family.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list",
        help="every attention mechanism: name, paper, formula, backends that run it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--kind", choices=("sequence", "vision", "unit"), help="only mechanisms of this kind")
    p.add_argument("--aliases", action="store_true", help="also show each mechanism's aliases")
    p.add_argument("--reasons", action="store_true", help="say why each refusing backend refuses")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=run)


def _sample_call(info: Any) -> list:
    """Build the mechanism small and record the attention() specs of one ordinary call."""
    import torch

    from ..nn._common import record_specs

    if info.kind != "sequence":
        return []
    kw: dict[str, Any] = {"key_dim": 8}
    if info.defaults.get("mode") == "location":
        kw["max_source_len"] = 8
    if "num_heads" in info.cls.__init__.__code__.co_varnames:
        kw["num_heads"] = 2
    g = torch.Generator().manual_seed(0)
    m = info.build(8, **kw)
    q, k = torch.randn(2, 3, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    km = torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad(), record_specs() as specs:
        m(q, k, key_allowed=km)
    return specs


def mechanism_rows(kind: str | None = None) -> list[dict[str, Any]]:
    """One dict per mechanism: name, aliases, kind, paper, formula, backends, refusals."""
    from ..backends import BACKENDS, backend_names
    from ..nn.registry import MECHANISMS, list_mechanisms

    rows = []
    for name in list_mechanisms(kind=kind):
        info = MECHANISMS[name]
        specs = _sample_call(info)
        backends: list[str] = []
        refusals: dict[str, list[str]] = {}
        if specs:
            for b in backend_names():
                reasons = sorted({r for s in specs for r in BACKENDS[b].not_supported_reasons(s)})
                if reasons:
                    refusals[b] = reasons
                else:
                    backends.append(b)
        rows.append({
            "name": name,
            "aliases": list(info.aliases),
            "kind": info.kind,
            "paper": info.paper,
            "formula": info.formula,
            "backends": backends,
            "refusals": refusals,
            "attention_calls": len(specs),
        })
    return rows


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, a dashed rule under the headers (also ``attnkit tasks``)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([line, sep, *body])


def mechanism_markdown(kind: str | None = None) -> str:
    """The mechanisms as a Markdown table (name, aliases, kind, paper, formula): the docs site's Mechanisms page."""
    from ..nn.registry import MECHANISMS, list_mechanisms

    lines = ["| name | aliases | kind | paper | formula |", "|---|---|---|---|---|"]
    for name in list_mechanisms(kind=kind):
        info = MECHANISMS[name]
        cells = [f"`{name}`", ", ".join(f"`{a}`" for a in info.aliases), info.kind, info.paper, f"`{info.formula}`"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def attention_lines() -> list[str]:
    """What ``--attention NAME`` means per model kind, as printed by ``attnkit list``."""
    from ..presets import attention_table

    lines = ["--attention NAME means, per model (attnkit train TASK --model MODEL --attention NAME):"]
    for models, meaning, names in attention_table():
        lines.append(f"  {models}: {meaning}")
        lines.append(f"    {', '.join(names)}")
    return lines


def run(args: argparse.Namespace) -> int:
    rows = mechanism_rows(args.kind)
    if not rows:
        raise CliError(f"no mechanism of kind {args.kind!r} is registered")
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    headers = ["name", *(["aliases"] if args.aliases else []), "paper", "formula", "backends"]
    table = []
    for r in rows:
        be = ", ".join(r["backends"]) if r["attention_calls"] else "- (no attention() call)"
        table.append([r["name"], *([", ".join(r["aliases"])] if args.aliases else []), r["paper"], r["formula"], be])
    print(text_table(headers, table))
    print(f"\n{len(rows)} mechanism{'s' if len(rows) != 1 else ''}. "
          "Backends: those that can run the mechanism's own call on CPU in float32; "
          "attnkit.create(name, dim, ...) builds one. attnkit tasks lists the tasks to train on.")
    print()
    print("\n".join(attention_lines()))
    if args.reasons:
        print()
        for r in rows:
            for b, why in r["refusals"].items():
                print(f"{r['name']}: {b} refuses: {'; '.join(why)}")
    return 0
