"""``attnkit info``: every attention backend, whether it can run here, and why not.

Lists the backends in dispatch priority order (``backend="auto"`` takes the
first that accepts a call) with their declared capabilities, then the
environment (torch, threads, CUDA, Triton). With ``--score`` (and
``--normalizer``, ``--causal``, ``--weights``, ``--mask``, ``--dtype``,
``--L/--S/--E``) it builds that call and prints each backend's verdict with its
reasons, and which one ``auto`` would pick:

    attnkit info --score additive --weights
    attnkit info --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from typing import Any

import torch

from ._common import CliError

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="backends, their capabilities, and why each can or cannot run here",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--score", help="check a sample call with this score (dot, scaled_dot, additive, ...)")
    p.add_argument("--normalizer", default="softmax", help="sample call: normalizer (default softmax)")
    p.add_argument("--causal", action="store_true", help="sample call: causal")
    p.add_argument("--weights", action="store_true", help="sample call: return_weights=True")
    p.add_argument("--mask", choices=("none", "bool", "float"), default="none", help="sample call: mask kind")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="sample call: dtype")
    p.add_argument("--device", default="cpu", help="sample call: device (default cpu)")
    p.add_argument("--L", type=int, default=128, help="sample call: queries (default 128)")
    p.add_argument("--S", type=int, default=None, help="sample call: keys (default L)")
    p.add_argument("--E", type=int, default=64, help="sample call: features (default 64)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def environment() -> dict[str, Any]:
    try:
        import triton

        triton_version: str | None = triton.__version__
    except ImportError:
        triton_version = None
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "triton": triton_version,
        "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
    }


def _sample_spec(args: argparse.Namespace):
    from ..functional import build_spec

    if args.L < 1 or args.E < 1 or (args.S is not None and args.S < 1):
        raise CliError(f"--L, --S and --E must be >= 1, got {args.L}, {args.S}, {args.E}")
    S = args.S or args.L
    dev = torch.device(args.device)
    dt = DTYPES[args.dtype]
    q = torch.empty(1, 1, args.L, args.E, dtype=dt, device=dev)
    k = torch.empty(1, 1, S, args.E, dtype=dt, device=dev)
    params: dict[str, Any] | None = None
    if args.score in ("additive", "bahdanau", "concat"):
        params = {"w_q": torch.empty(args.E, args.E, dtype=dt, device=dev),
                  "w_k": torch.empty(args.E, args.E, dtype=dt, device=dev),
                  "v": torch.empty(args.E, dtype=dt, device=dev)}
    elif args.score in ("general", "bilinear"):
        params = {"weight": torch.empty(args.E, args.E, dtype=dt, device=dev)}
    elif args.score == "location":
        params = {"weight": torch.empty(S, args.E, dtype=dt, device=dev)}
    mask = None
    if args.mask == "bool":
        mask = torch.ones(args.L, S, dtype=torch.bool, device=dev)
    elif args.mask == "float":
        mask = torch.zeros(args.L, S, dtype=dt, device=dev)
    return build_spec(q, k, k, score=args.score, score_params=params, normalizer=args.normalizer, mask=mask,
                      causal=args.causal, return_weights=args.weights)


def report(args: argparse.Namespace) -> dict[str, Any]:
    from ..backends import BACKENDS, auto_declines, backend_names, select_backend

    spec = _sample_spec(args) if args.score else None
    rows = []
    chosen = None
    for name in backend_names():
        b = BACKENDS[name]
        why = b.unavailable_reason()
        row: dict[str, Any] = {
            "name": name,
            "priority": b.priority,
            "available": why is None,
            "unavailable_reason": why,
            "description": b.description,
            "notes": b.notes,
            "capabilities": b.capabilities(),
        }
        if spec is not None:
            reasons = b.not_supported_reasons(spec)
            row["reasons"] = reasons
            row["declined"] = None if reasons else auto_declines(b, spec, None)
        rows.append(row)
    if spec is not None:
        try:
            chosen = select_backend(spec).name
        except ValueError:
            chosen = None
    out: dict[str, Any] = {"environment": environment(), "backends": rows}
    if spec is not None:
        out["call"] = {"score": args.score, "normalizer": args.normalizer, "causal": args.causal,
                       "weights": args.weights, "mask": args.mask, "dtype": args.dtype, "device": args.device,
                       "L": args.L, "S": args.S or args.L, "E": args.E, "auto": chosen}
    return out


def run(args: argparse.Namespace) -> int:
    rep = report(args)
    if args.json:
        print(json.dumps(rep, default=str))
        return 0
    env = rep["environment"]
    print("attnkit backends (dispatch order; backend='auto' takes the first that accepts a call)")
    print(f"torch {env['torch']}, {env['threads']} threads, CPU {env['cpu_capability']}, "
          f"CUDA {'yes: ' + env['gpu'] if env['cuda'] else 'no'}, triton {env['triton'] or 'not installed'}"
          f"{' (TRITON_INTERPRET=1)' if env['triton_interpret'] else ''}")
    for row in rep["backends"]:
        mark = "available" if row["available"] else f"unavailable: {row['unavailable_reason']}"
        print(f"\n{row['name']:<14} priority {row['priority']:>4}  {mark}")
        print(f"  {row['description']}")
        if row["notes"]:
            print(f"  {row['notes']}")
        caps = row["capabilities"]
        flags = [k for k in ("mask", "causal", "score_mod", "mask_mod", "dropout", "weights", "gqa") if caps[k]]
        print(f"  devices {','.join(caps['devices'])}; dtypes {','.join(caps['dtypes'])}; scores {caps['scores']}; "
              f"normalizers {caps['normalizers']}")
        print(f"  supports {', '.join(flags) or 'none of mask/causal/...'}"
              + (f"; head dim <= {caps['max_head_dim']}" if caps["max_head_dim"] else ""))
        if "reasons" in row:
            verdict = "ok" if not row["reasons"] else "refused: " + "; ".join(row["reasons"])
            if row.get("declined"):
                verdict = f"runs, but auto passes it on: {row['declined']}"
            print("  this call: " + verdict)
    if "call" in rep:
        c = rep["call"]
        print(f"\nauto picks: {c['auto'] or 'nothing (every backend refused)'} for score={c['score']} "
              f"normalizer={c['normalizer']} L={c['L']} S={c['S']} E={c['E']} {c['dtype']} on {c['device']}")
    return 0
