"""RAM variants, one training each, with the validation curve: how the presets of issue 13 were chosen.

Each run trains ``attnkit train TASK --model ram`` with the presets' options, ``--set`` overriding model
fields, ``--locator mlp`` swapping the location network for a 2-layer MLP (128 ReLU units) on the same
input, for ``--minutes`` of wall time; it prints every validation and appends one JSON line (test and
validation accuracy, steps, curve, load) to ``--out``. Two at a time, one thread each, share the 2 cores:

    .venv/bin/python benchmarks/probe_ram_variants.py --task cluttered-digits --minutes 3 --set glimpse_dim=256 &
    .venv/bin/python benchmarks/probe_ram_variants.py --task cluttered-digits --minutes 3 --locator mlp &

``--oracle`` puts every glimpse after the first on the digit's centre (recorded when the canvas is drawn) and
trains by cross-entropy alone: what the glimpse network and core reach when the policy is perfect.

``benchmarks/results/ram_variants_2026-12-02.jsonl`` holds the runs behind benchmarks/RESULTS.md (the first
six, variants ``base``/``skip``/``skipmlp``, ran on the per-pixel retina of commit 630ac3d, ``skip`` being
the location network on [h_t; ρ] before it became the model's ``locator_input``), on a CPU with AVX-512;
``ram_variants_2026-12-02d.jsonl`` the screens of the spatial locator, ``step_loss`` and the oracle, on a CPU
with AVX2 alone where a training step takes about 3x as long; ``ram_variants_2026-12-02e.jsonl`` the 4-pixel
fovea at 3 and 4 scales on translated digits (same CPU). In the lines written before ``--locator config``
existed, ``"locator": "linear"`` means the same thing: the config's location network, left in place (the
spatial one in the 02d and 02e screens, whose ``set`` holds only the fields changed from the presets).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn as nn

import attnkit.data.vision as vision
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
    ap.add_argument("--locator", choices=("config", "mlp"), default="config",
                    help="config: the location network the model's config builds; mlp: a 2-layer MLP in its place")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="RAMConfig fields (JSON values)")
    ap.add_argument("--oracle", action="store_true",
                    help="every glimpse after the first at the digit's centre (trained by cross-entropy alone): "
                         "what the glimpse network and core can do when the policy is perfect")
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
    if args.oracle:
        oracle_positions(task)
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
    if args.oracle:
        net.__class__ = type("OracleRAM", (type(net),), {"_next_location": oracle_next_location})
        batches = task.batches

        def batches_with_centres(split, batch_size, **kw):  # the model reads each batch's digit centres
            for b in batches(split, batch_size, **kw):
                net._centres = task._centres[split][b.index]
                yield b

        task.batches = batches_with_centres
        evaluate = oracle_evaluate(task, net)
    opts = {k: v for k, v in (("lr", args.lr), ("batch_size", args.batch)) if v is not None}
    res = train(task, net, seed=args.seed, minutes=args.minutes, progress=False,
                callback=lambda s, m: step.__setitem__(0, s), **opts)
    row = {"variant": args.label, "task": args.task, "glimpses": args.glimpses, "locator": args.locator,
           "set": args.set, "test": res["accuracy"], "valid": res["valid_accuracy"], "steps": res["steps"],
           "curve": curve, "load": os.getloadavg()}
    print(json.dumps(row), flush=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")


def oracle_positions(task) -> None:
    """Make ``task.draw`` keep each canvas's digit centre as a location in [-1, 1]² (``task._centres[split]``)."""
    place, draw, corners = vision.place, task.draw, {}
    task._centres = {}

    def recording_place(canvas, patches, top, left):
        if patches.shape[-1] == vision.DIGIT_SIZE and patches.shape[0] == canvas.shape[0]:
            corners["last"] = (top, left)  # the digit, pasted last
        return place(canvas, patches, top, left)

    def recording_draw(split, repeats, generator):
        vision.place = recording_place
        try:
            out = draw(split, repeats, generator)
        finally:
            vision.place = place
        top, left = corners["last"]
        S, c = task.image_size, (vision.DIGIT_SIZE - 1) / 2
        task._centres[split] = torch.stack([(2 * (left + c) + 1) / S - 1, (2 * (top + c) + 1) / S - 1], 1).float()
        return out

    task.draw = recording_draw


def oracle_next_location(self, h, rho, loc, generator):
    return self._centres.to(h.dtype), None


def oracle_evaluate(task, net):
    def evaluate(model, split="valid", **_):
        x, y = task.images(split)
        model.eval()
        right = 0
        with torch.no_grad():
            for i in range(0, x.shape[0], 500):
                net._centres = task._centres[split][i:i + 500]
                right += int((model(x[i:i + 500]).logits.argmax(-1) == y[i:i + 500]).sum())
        model.train()
        return {"accuracy": right / x.shape[0]}
    return evaluate


if __name__ == "__main__":
    main()
