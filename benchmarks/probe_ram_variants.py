"""RAM variants, one training each, with the validation curve: how the presets of issue 13 were chosen.

Each run trains ``attnkit train TASK --model ram`` with the presets' options, ``--set`` overriding model
fields, ``--locator mlp`` swapping the location network for a 2-layer MLP (128 ReLU units) on the same
input, for ``--minutes`` of wall time; it prints every validation and appends one JSON line (test and
validation accuracy, steps, curve, load) to ``--out``. Two at a time, one thread each, share the 2 cores:

    .venv/bin/python benchmarks/probe_ram_variants.py --task cluttered-digits --minutes 3 --set glimpse_dim=256 &
    .venv/bin/python benchmarks/probe_ram_variants.py --task cluttered-digits --minutes 3 --locator mlp &

``benchmarks/results/ram_variants_2026-12-02.jsonl`` holds the runs behind benchmarks/RESULTS.md (the first
six, variants ``base``/``skip``/``skipmlp``, ran on the per-pixel retina of commit 630ac3d, ``skip`` being
the location network on [h_t; ρ] before it became the model's ``locator_input``).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn as nn

from attnkit.data import get_task
from attnkit.models import build_model, model_config_for_task
from attnkit.presets import model_options
from attnkit.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="translated-digits")
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--glimpses", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, help="default: the presets'")
    ap.add_argument("--batch", type=int, help="default: the presets'")
    ap.add_argument("--locator", choices=("linear", "mlp"), default="linear")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="RAMConfig fields (JSON values)")
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default="benchmarks/results/ram_variants.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fields = {"glimpses": args.glimpses}
    for kv in args.set:
        key, _, value = kv.partition("=")
        try:
            fields[key] = json.loads(value)
        except json.JSONDecodeError:
            fields[key] = value  # a string field: --set locator_input=state
    task = get_task(args.task, seed=args.seed)
    torch.manual_seed(args.seed)
    net = build_model(model_config_for_task("ram", task, **{**model_options(task.name, "ram"), **fields}))
    if args.locator == "mlp":
        net.locator = nn.Sequential(nn.Linear(net.locator.in_features, 128), nn.ReLU(), nn.Linear(128, 2))
    curve: list[tuple[int, float, int]] = []
    step = [0]
    t0 = time.perf_counter()
    evaluate = task.evaluate

    def scored(model: nn.Module, split: str = "valid", **kw):  # every validation, with its step and time
        r = evaluate(model, split, **kw)
        if split == "valid":
            curve.append((step[0], round(r["accuracy"], 4), round(time.perf_counter() - t0)))
            print(args.label, curve[-1], flush=True)
        return r

    task.evaluate = scored
    opts = {k: v for k, v in (("lr", args.lr), ("batch_size", args.batch)) if v is not None}
    res = train(task, net, seed=args.seed, minutes=args.minutes, progress=False,
                callback=lambda s, m: step.__setitem__(0, s), **opts)
    row = {"variant": args.label, "task": args.task, "glimpses": args.glimpses, "locator": args.locator,
           "set": args.set, "test": res["accuracy"], "valid": res["valid_accuracy"], "steps": res["steps"],
           "curve": curve, "load": os.getloadavg()}
    print(json.dumps(row), flush=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
