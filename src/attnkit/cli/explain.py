"""``attnkit explain``: attention worked step by step, as on paper.

For one query over a handful of tokens it prints: the query; each key's raw
score (the dot product, for the dot family); the scaled score; exp; the
softmax weight; each weighted value; the output. The numbers come from
``attnkit.functional`` itself (the same scores and normalizer every model
uses), so the explanation is the computation.

Default: "The cat sat on the mat" with 2-D embeddings, query "sat",
scaled dot-product: weights ≈ [0.082, 0.166, 0.337, 0.166, 0.082, 0.166],
output ≈ [0.670, 0.504].
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ._common import CliError

DEFAULT_TOKENS = ["The", "cat", "sat", "on", "the", "mat"]
DEFAULT_VECTORS = [[0, 0], [0, 1], [1, 1], [1, 0], [0, 0], [1, 0]]
DEFAULT_QUERY = "sat"
EXPLAIN_SCORES = ("dot", "scaled_dot", "cosine", "general", "additive")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="scaled dot-product (or another score) worked step by step",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tokens", nargs="+", help="token names (default: The cat sat on the mat)")
    p.add_argument(
        "--vectors",
        help="one key vector per token, rows separated by ';' and numbers by ',' (e.g. '0,0;0,1;1,1')",
    )
    p.add_argument("--values", help="value vectors like --vectors (default: the key vectors)")
    p.add_argument("--query", help="a token name or a vector like '1,1' (default: sat)")
    p.add_argument("--file", type=Path, help="JSON file with tokens, vectors, optional values, query, score")
    p.add_argument("--score", choices=EXPLAIN_SCORES, help="alignment score (default scaled_dot)")
    p.add_argument("--beta", type=float, default=None, help="cosine: key strength β (default 1)")
    p.add_argument("--weight", help="general: matrix W (E x E), rows ';', numbers ','")
    p.add_argument("--w-q", dest="w_q", help="additive: W_q (D x E)")
    p.add_argument("--w-k", dest="w_k", help="additive: W_k (D x E)")
    p.add_argument("--v", dest="v_a", help="additive: v (D numbers, ',')")
    p.add_argument("--scale", type=float, default=None, help="override the score's scale")
    p.add_argument("--compare", action="store_true", help="also show the weights under every score")
    p.add_argument("--decimals", type=int, default=3, help="digits after the point (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=run)


def parse_matrix(text: str, name: str) -> list[list[float]]:
    """'1,2;3,4' -> [[1, 2], [3, 4]], with an error that names the flag."""
    try:
        rows = [[float(x) for x in row.split(",")] for row in text.strip().split(";") if row.strip()]
    except ValueError:
        raise CliError(f"{name} must be numbers separated by ',' with rows separated by ';', got {text!r}") from None
    if not rows or len({len(r) for r in rows}) != 1:
        raise CliError(f"{name} must have rows of equal length, got {text!r}")
    return rows


def parse_vector(text: str, name: str) -> list[float]:
    rows = parse_matrix(text, name)
    if len(rows) != 1:
        raise CliError(f"{name} must be one row of numbers like '1,0', got {text!r}")
    return rows[0]


def _config(args: argparse.Namespace) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    if args.file is not None:
        try:
            cfg = json.loads(args.file.read_text())
        except json.JSONDecodeError as e:
            raise CliError(f"--file {args.file} is not valid JSON: {e}") from None
        if not isinstance(cfg, dict):
            raise CliError(f"--file {args.file} must hold a JSON object with tokens, vectors and query")
    tokens = args.tokens or cfg.get("tokens")
    vectors = parse_matrix(args.vectors, "--vectors") if args.vectors else cfg.get("vectors")
    if tokens is None and vectors is None:
        tokens, vectors = DEFAULT_TOKENS, DEFAULT_VECTORS
    elif vectors is None:
        raise CliError("--tokens needs --vectors (one vector per token)")
    elif tokens is None:
        tokens = [f"t{i}" for i in range(len(vectors))]
    if len(tokens) != len(vectors):
        raise CliError(f"got {len(tokens)} tokens but {len(vectors)} vectors; give one vector per token")
    values = parse_matrix(args.values, "--values") if args.values else cfg.get("values", vectors)
    if len(values) != len(vectors):
        raise CliError(f"got {len(values)} values for {len(vectors)} keys; give one value per key")
    query = args.query if args.query is not None else cfg.get("query", DEFAULT_QUERY)
    if isinstance(query, str):
        if query in tokens:
            qv = vectors[tokens.index(query)]
            qname = query
        else:
            try:
                qv = parse_vector(query, "--query")
            except CliError:
                raise CliError(
                    f"--query {query!r} is neither one of the tokens ({', '.join(tokens)}) nor a vector like '1,0'"
                ) from None
            qname = "query"
    else:
        qv, qname = list(query), "query"
    E = len(vectors[0])
    if len(qv) != E and (args.score or cfg.get("score")) != "additive":
        raise CliError(f"the query has {len(qv)} numbers but the keys have {E}; give a query of size {E}")
    score = args.score or cfg.get("score", "scaled_dot")
    if score not in EXPLAIN_SCORES:
        raise CliError(f"score must be one of {', '.join(EXPLAIN_SCORES)}, got {score!r}")
    return {
        "tokens": list(tokens),
        "vectors": vectors,
        "values": values,
        "query": qv,
        "query_name": qname,
        "score": score,
        "beta": args.beta if args.beta is not None else cfg.get("beta", 1.0),
        "weight": parse_matrix(args.weight, "--weight") if args.weight else cfg.get("weight"),
        "w_q": parse_matrix(args.w_q, "--w-q") if args.w_q else cfg.get("w_q"),
        "w_k": parse_matrix(args.w_k, "--w-k") if args.w_k else cfg.get("w_k"),
        "v": parse_vector(args.v_a, "--v") if args.v_a else cfg.get("v"),
        "scale": args.scale if args.scale is not None else cfg.get("scale"),
    }


def _make_score(cfg: dict[str, Any], name: str, E: int):
    import torch

    from ..core.scores import Additive, Cosine, General, get_score

    dt = torch.float64
    if name == "general":
        w = (
            cfg["weight"] if cfg["weight"] is not None
            else [[1.0 if i == j else 0.0 for j in range(E)] for i in range(E)]
        )
        return General(torch.tensor(w, dtype=dt))
    if name == "additive":
        if cfg["w_q"] is None or cfg["w_k"] is None or cfg["v"] is None:
            eye = [[1.0 if i == j else 0.0 for j in range(E)] for i in range(E)]
            w_q = cfg["w_q"] or eye
            w_k = cfg["w_k"] or eye
            v = cfg["v"] or [1.0] * len(w_q)
        else:
            w_q, w_k, v = cfg["w_q"], cfg["w_k"], cfg["v"]
        return Additive(torch.tensor(w_q, dtype=dt), torch.tensor(w_k, dtype=dt), torch.tensor(v, dtype=dt))
    if name == "cosine":
        return Cosine(float(cfg["beta"]))
    return get_score(name)


def compute(cfg: dict[str, Any], score_name: str | None = None) -> dict[str, Any]:
    """Every intermediate number of one attention step, via attnkit.functional."""
    import torch

    from ..functional import attention

    name = score_name or cfg["score"]
    dt = torch.float64
    K = torch.tensor(cfg["vectors"], dtype=dt)  # (S, E)
    V = torch.tensor(cfg["values"], dtype=dt)  # (S, Ev)
    q = torch.tensor(cfg["query"], dtype=dt)  # (E,)
    sc = _make_score(cfg, name, K.shape[-1])
    q4, K4, V4 = q.view(1, 1, 1, -1), K.view(1, 1, *K.shape), V.view(1, 1, *V.shape)  # (1, 1, N, E)
    sc.check(q4, K4)
    scale = cfg["scale"] if cfg["scale"] is not None else sc.default_scale(q4, K4)
    raw = sc(q4, K4).view(-1)  # (S,)
    scaled = raw * scale
    out, w = attention(q4, K4, V4, score=sc, scale=scale, return_weights=True, backend="reference")
    w = w.view(-1)
    exps = torch.exp(scaled)
    weighted = w[:, None] * V  # (S, Ev)
    return {
        "score": name,
        "scale": float(scale),
        "tokens": cfg["tokens"],
        "query_name": cfg["query_name"],
        "query": q.tolist(),
        "keys": K.tolist(),
        "values": V.tolist(),
        "raw_scores": raw.tolist(),
        "scaled_scores": scaled.tolist(),
        "exp": exps.tolist(),
        "exp_sum": float(exps.sum()),
        "weights": w.tolist(),
        "weighted_values": weighted.tolist(),
        "output": out.view(-1).tolist(),
    }


def _fmt(x: float, d: int) -> str:
    return f"{x:.{d}f}"


def _vec(xs: list[float], d: int) -> str:
    return "[" + ", ".join(_fmt(x, d) for x in xs) + "]"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    return "\n".join([line, sep, *body])


_RAW_LABEL = {
    "dot": "q·k",
    "scaled_dot": "q·k",
    "cosine": "cos(q,k)·β",
    "general": "q W kᵀ",
    "additive": "vᵀtanh(Wq q+Wk k)",
}


def render(r: dict[str, Any], d: int) -> str:
    toks = r["tokens"]
    lab = _RAW_LABEL[r["score"]]
    out = []
    out.append(
        f"Attention of {r['query_name']!r} over {len(toks)} tokens, score = {r['score']}, scale = {r['scale']:.4g}"
    )
    out.append("")
    out.append(f"Step 1. The query: q = {r['query_name']} = {_vec(r['query'], d)}")
    out.append("")
    out.append(f"Step 2. Score each key: {lab}, then multiply by the scale {r['scale']:.4g}")
    rows = [
        [t, _vec(k, d), _fmt(s, d), _fmt(ss, d)]
        for t, k, s, ss in zip(toks, r["keys"], r["raw_scores"], r["scaled_scores"])
    ]
    out.append(_table(["token", "key", lab, "scaled"], rows))
    out.append("")
    out.append(
        f"Step 3. exp of each scaled score, then divide by their sum ({_fmt(r['exp_sum'], d)}): the softmax weights"
    )
    rows = [
        [t, _fmt(ss, d), _fmt(e, d), _fmt(w, d)]
        for t, ss, e, w in zip(toks, r["scaled_scores"], r["exp"], r["weights"])
    ]
    rows.append(["sum", "", _fmt(r["exp_sum"], d), _fmt(sum(r["weights"]), d)])
    out.append(_table(["token", "scaled", "exp", "weight"], rows))
    out.append("")
    out.append("Step 4. Weight each value")
    rows = [
        [t, _fmt(w, d), _vec(v, d), _vec(wv, d)]
        for t, w, v, wv in zip(toks, r["weights"], r["values"], r["weighted_values"])
    ]
    out.append(_table(["token", "weight", "value", "weight x value"], rows))
    out.append("")
    out.append(f"Step 5. Add the weighted values: output = {_vec(r['output'], d)}")
    top = max(range(len(toks)), key=lambda i: r["weights"][i])
    out.append(f"        (the query attends most to {toks[top]!r}, weight {_fmt(r['weights'][top], d)})")
    return "\n".join(out)


def render_compare(results: list[dict[str, Any]], d: int) -> str:
    toks = results[0]["tokens"]
    rows = [[r["score"], *(_fmt(w, d) for w in r["weights"]), _vec(r["output"], d)] for r in results]
    return "How each score changes the weights\n" + _table(["score", *toks, "output"], rows)


def run(args: argparse.Namespace) -> int:
    if args.decimals < 0 or args.decimals > 12:
        raise CliError(f"--decimals must be between 0 and 12, got {args.decimals}")
    cfg = _config(args)
    result = compute(cfg)
    for key in ("weights", "output"):
        if not all(math.isfinite(x) for x in result[key]):
            raise CliError(f"the {key} are not finite; check the vectors and parameters")
    comparison = []
    if args.compare:
        E = len(cfg["vectors"][0])
        names = [n for n in EXPLAIN_SCORES if len(cfg["query"]) == E or n == "additive"]
        comparison = [compute(cfg, n) for n in names]
    if args.json:
        if comparison:
            compare = [{"score": c["score"], "weights": c["weights"], "output": c["output"]} for c in comparison]
            result = {**result, "compare": compare}
        print(json.dumps(result))
        return 0
    print(render(result, args.decimals))
    if comparison:
        print()
        print(render_compare(comparison, args.decimals))
    return 0
