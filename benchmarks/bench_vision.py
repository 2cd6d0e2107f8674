"""Attention for images, trained to the issue's targets on CPU: the tables of issue 13.

1. ``cnn``: the ResNet of ``attnkit.models.vision`` on ``digits`` with each block attention
   (none, se, spatial, cbam), seeds 0, 1, 2: test accuracy mean ± sd, parameters, wall time.
   Target: each >= 98.5 % (mean of 3 seeds).
2. ``translated``: the Recurrent Attention Model on ``translated-digits`` (32x32) with 2, 4, 6 and 8
   glimpses, beside the same-budget baselines: a fully connected net, the CNN, RAM with random
   glimpses (6). Targets: >= 97 % with <= 6 glimpses; error falling 2 -> 4 -> 6 -> 8.
3. ``cluttered``: RAM on ``cluttered-digits`` (4 fragments) beside random glimpses, the fully
   connected net and the CNN. Targets: >= 90 %; random-glimpse error >= 2x RAM's; RAM ahead of FC.

Every run trains with the options of ``attnkit.presets`` for its (task, model) (what ``attnkit
train TASK --model M`` does), so the budget is the presets table's (the canvases: 9 minutes of wall time
each; ``--steps N`` trains every row N steps instead, the cosine over them); ``--jobs 2 --threads 1``
trains two rows at a time on the 2 cores; each row records its wall time, training steps and
``os.getloadavg()`` before and after. The peer of a learning result is its
baseline in the same budget: each table prints the ratio of errors beside it.

    .venv/bin/python benchmarks/bench_vision.py --table cnn
    .venv/bin/python benchmarks/bench_vision.py --table translated --table cluttered --jobs 2 --threads 1
    .venv/bin/python benchmarks/bench_vision.py --table cluttered --steps 50      # a smoke run

The glimpse trend at equal steps over several seeds: one ``--table translated --rows ram --steps 3000
--seed S --out seedS.json`` per seed, then ``--merge seed0.json seed1.json ...`` (trains nothing) prints each
glimpse count's test error per seed, mean and sd, and judges "falling" strictly on the means and seed by seed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from attnkit.data import get_task
from attnkit.models import build_model, model_config_for_task
from attnkit.presets import model_options
from attnkit.train import train

RESULTS = Path(__file__).resolve().parent / "results"


RUNS: Path | None = None  # --runs: keep every run directory there (for `attnkit predict RUN_DIR --plot`)
THREADS = 2  # --threads: torch threads of each training
MINUTES: float | None = None  # --minutes: every training's wall-time budget instead of the presets'


def run_one(task_name: str, model: str, *, seed: int = 0, steps: int | None = None, minutes: float | None = None,
            attention: str | None = None, label: str, **fields: Any) -> dict[str, Any]:
    """Train (task, model) with the presets' options (``fields`` override model fields); the test metrics."""
    task = get_task(task_name, seed=seed)
    opts = {**model_options(task.name, model, attention=attention), **fields}
    torch.manual_seed(seed)
    net = build_model(model_config_for_task(model, task, **opts))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    out_dir = None
    if RUNS is not None:
        slug = "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")
        out_dir = RUNS / f"{task_name}-{slug}-s{seed}"
    res = train(task, net, seed=seed, steps=steps, minutes=minutes, progress=False, out_dir=out_dir,
                force=out_dir is not None)
    wall = time.perf_counter() - t0
    row = {"label": label, "task": task_name, "model": model, "seed": seed, "accuracy": res["accuracy"],
           "error": 1 - res["accuracy"], "valid_accuracy": res["valid_accuracy"], "parameters": res["parameters"],
           "steps": res["steps"], "wall_seconds": round(wall, 1), "train_seconds": round(res["train_seconds"], 1),
           "load_before": [round(x, 2) for x in load0], "load_after": [round(x, 2) for x in os.getloadavg()],
           "config": dict(net.config)}
    print(f"  {label:<28} seed {seed}: accuracy {row['accuracy']:.2%}  ({row['parameters']:,} parameters, "
          f"{row['steps']} steps, {wall:.0f} s, load {row['load_after'][0]:.1f})", flush=True)
    return row


def table_cnn(steps: int | None, seeds: list[int], attentions: list[str]) -> dict[str, Any]:
    rows = [run_one("digits", "cnn", attention=a, seed=s, steps=steps, label=a) for a in attentions for s in seeds]
    summary = {}
    for a in attentions:
        acc = torch.tensor([r["accuracy"] for r in rows if r["label"] == a], dtype=torch.float64)
        summary[a] = {"mean": float(acc.mean()), "sd": float(acc.std()) if acc.numel() > 1 else 0.0,
                      "min": float(acc.min()), "max": float(acc.max()), "met": bool(acc.mean() >= 0.985)}
    none_err = 1 - summary["none"]["mean"] if "none" in summary else float("nan")
    print(f"\n{'attention':<10} {'accuracy (mean ± sd)':>22} {'min - max':>17} {'error / none':>13}  target >= 98.5 %")
    for a, s in summary.items():
        ratio = (1 - s["mean"]) / none_err if none_err > 0 else float("nan")
        print(f"{a:<10} {s['mean']:>13.2%} ± {s['sd']:.2%} {s['min']:>8.2%} - {s['max']:.2%} {ratio:>13.2f}  "
              f"{'met' if s['met'] else 'MISSED'}")
    return {"rows": rows, "summary": summary}


def _rows(task: str, which: list[str], glimpses: list[int], seed: int = 0) -> list[dict[str, Any]]:
    """The runs of one table, in its order: RAM at each glimpse count, then the same-budget baselines."""
    rows = [{"task_name": task, "model": "ram", "glimpses": g, "label": f"RAM, {g} glimpses"}
            for g in (glimpses if "ram" in which else [])]
    base = {"random": {"model": "ram", "policy": "random", "label": "RAM, random glimpses (6)"},
            "mlp": {"model": "mlp", "label": "fully connected"},
            "cnn": {"model": "cnn", "label": "CNN (no attention)"}}
    rows += [{"task_name": task, **base[w]} for w in ("random", "mlp", "cnn") if w in which]
    return [{**r, "seed": seed} for r in rows]


def _run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(THREADS)
    return run_one(**spec)


def run_all(specs: list[dict[str, Any]], steps: int | None, jobs: int) -> list[dict[str, Any]]:
    """Every spec trained, ``jobs`` at a time (each in its own process with ``--threads`` threads)."""
    specs = [{**s, "steps": steps, "minutes": MINUTES} for s in specs]
    if jobs <= 1:
        return [_run_spec(s) for s in specs]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(THREADS, RUNS)) as pool:
        return list(pool.map(_run_spec, specs))


def _init_worker(threads: int, runs: Path | None) -> None:
    global THREADS, RUNS
    THREADS, RUNS = threads, runs  # the spawned process starts from the module's defaults


def table_translated(steps: int | None, glimpses: list[int], which: list[str], jobs: int = 1,
                     seed: int = 0) -> dict[str, Any]:
    rows = run_all(_rows("translated-digits", which, glimpses, seed), steps, jobs)
    if not rows or "ram" not in which:  # a part of the table (the rows run in separate processes)
        if rows:
            _print(rows, reference=rows[0])
        return {"rows": rows}
    ram = sorted((r for r in rows if r["model"] == "ram" and r["config"]["policy"] == "learned"),
                 key=lambda r: r["config"]["glimpses"])  # --glimpses may pair short and long runs: 2,8,4,6
    falling = all(a["error"] > b["error"] for a, b in zip(ram, ram[1:]))  # strictly: a tie is not a fall
    best6 = max((r["accuracy"] for r in ram if r["config"]["glimpses"] <= 6), default=0.0)
    _print(rows, reference=next((r for r in ram if r["config"]["glimpses"] == 6), ram[-1]))
    print(f"targets: >= 97 % with <= 6 glimpses: {best6:.2%} ({'met' if best6 >= 0.97 else 'MISSED'}); "
          f"error falling with glimpses: {'met' if falling else 'MISSED'}")
    return {"rows": rows, "targets": {"best_accuracy_le_6_glimpses": best6, "met_97": best6 >= 0.97,
                                      "error_falls": falling}}


def table_cluttered(steps: int | None, which: list[str], jobs: int = 1, seed: int = 0) -> dict[str, Any]:
    rows = run_all(_rows("cluttered-digits", which, [6], seed), steps, jobs)
    if not {"ram", "random", "mlp"} <= set(which):  # a part of the table: no targets to judge
        if rows:
            _print(rows, reference=rows[0])
        return {"rows": rows}
    ram, rnd, fc = rows[0], rows[1], rows[2]  # _rows' order: RAM, random glimpses, fully connected (, CNN)
    ratio = rnd["error"] / ram["error"] if ram["error"] > 0 else float("inf")
    _print(rows, reference=ram)
    met = {"ram_90": ram["accuracy"] >= 0.90, "random_error_2x": ratio >= 2.0,
           "ram_beats_fc": ram["error"] < fc["error"]}
    print(f"targets: RAM >= 90 %: {ram['accuracy']:.2%} ({'met' if met['ram_90'] else 'MISSED'}); random-glimpse "
          f"error / RAM's = {ratio:.2f} (>= 2: {'met' if met['random_error_2x'] else 'MISSED'}); RAM ahead of the "
          f"fully connected net: {'met' if met['ram_beats_fc'] else 'MISSED'}")
    return {"rows": rows, "targets": {"random_error_ratio": ratio, **met}}


def merge_translated(paths: list[str]) -> dict[str, Any]:
    """The glimpse rows of several ``--table translated`` runs (one seed each) as one table: each count's test
    error per seed, mean and sd; the trend judged on the means (strictly) and seed by seed."""
    runs = [json.loads(Path(p).read_text())["translated"]["rows"] for p in paths]
    # a file's budget: its glimpse rows' one step count (a --steps run) or "clock" (steps vary with glimpses)
    budgets = {p: ({r["steps"] for r in rows if r["model"] == "ram"} or {None}) for p, rows in zip(paths, runs)}
    budgets = {p: next(iter(b)) if len(b) == 1 else "clock" for p, b in budgets.items()}
    if len(set(budgets.values())) > 1:
        raise SystemExit(f"--merge: the runs had different budgets ({budgets}); merge runs of one --steps "
                         f"(or all on the clock)")
    by_count: dict[int, dict[int, float]] = {}
    configs = set()
    for path, rows in zip(paths, runs):
        for r in rows:
            if r["model"] == "ram" and r["config"]["policy"] == "learned":
                g, s = r["config"]["glimpses"], r["seed"]
                if s in by_count.setdefault(g, {}):
                    raise SystemExit(f"--merge: {path} holds a second run of {g} glimpses on seed {s}; "
                                     f"merge one file per seed")
                by_count[g][s] = r["error"]
                configs.add(json.dumps({**r["config"], "glimpses": None}, sort_keys=True))
    if len(configs) > 1:
        raise SystemExit(f"--merge: the runs differ in more than glimpses and seed ({len(configs)} model "
                         f"configs); merge runs of one configuration")
    seeds = sorted({s for errs in by_count.values() for s in errs})
    counts = sorted(by_count)
    missing = [(g, s) for g in counts for s in seeds if s not in by_count[g]]
    if missing:
        raise SystemExit(f"--merge: no run for (glimpses, seed) {missing}; give one file per seed, each with "
                         f"every glimpse count")
    summary = {g: {"errors": [by_count[g][s] for s in seeds], "mean": statistics.mean(by_count[g].values()),
                   "sd": statistics.stdev(by_count[g].values()) if len(seeds) > 1 else 0.0} for g in counts}
    print(f"\n{'glimpses':<9}" + "".join(f"{'seed ' + str(s):>9}" for s in seeds) + f"{'mean':>9}{'sd':>8}")
    for g in counts:
        print(f"{g:<9}" + "".join(f"{e:>9.2%}" for e in summary[g]["errors"])
              + f"{summary[g]['mean']:>9.2%}{summary[g]['sd']:>8.2%}")
    falls = all(summary[a]["mean"] > summary[b]["mean"] for a, b in zip(counts, counts[1:]))
    per_seed = {s: all(by_count[a][s] > by_count[b][s] for a, b in zip(counts, counts[1:])) for s in seeds}
    best6 = {s: 1 - min(by_count[g][s] for g in counts if g <= 6) for s in seeds}
    print(f"targets: mean error falling {' -> '.join(map(str, counts))}: {'met' if falls else 'MISSED'} "
          f"(seed by seed: {', '.join(f'{s}: ' + ('falls' if ok else 'not') for s, ok in per_seed.items())}); "
          f">= 97 % with <= 6 glimpses: " + ", ".join(f"seed {s} {a:.2%}" for s, a in best6.items()))
    return {"files": paths, "budget": next(iter(budgets.values())), "seeds": seeds,
            "summary": {str(g): v for g, v in summary.items()},
            "targets": {"mean_error_falls": falls, "falls_per_seed": per_seed, "best_accuracy_le_6_glimpses": best6}}


def _print(rows: list[dict[str, Any]], *, reference: dict[str, Any]) -> None:
    print(f"\n{'model':<28} {'test error':>10} {'accuracy':>9} {'error / ref':>11} {'parameters':>11} "
          f"{'steps':>6} {'wall (s)':>9} {'load':>5}   (ref: {reference['label']})")
    for r in rows:
        ratio = r["error"] / reference["error"] if reference["error"] > 0 else float("inf")
        print(f"{r['label']:<28} {r['error']:>10.2%} {r['accuracy']:>9.2%} {ratio:>11.2f} {r['parameters']:>11,} "
              f"{r['steps']:>6} {r['wall_seconds']:>9.0f} {r['load_after'][0]:>5.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", choices=("cnn", "translated", "cluttered"), action="append",
                    help="which table (repeatable; default all three)")
    ap.add_argument("--steps", type=int, help="override every run's step budget (default: the presets')")
    ap.add_argument("--minutes", type=float, help="override every run's wall-time budget (default: the presets')")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the CNN table")
    ap.add_argument("--seed", type=int, default=0, help="seed of the translated and cluttered tables")
    ap.add_argument("--attention", default="none,se,spatial,cbam", help="block attentions of the CNN table")
    ap.add_argument("--glimpses", default="2,4,6,8", help="glimpse counts of the translated table")
    ap.add_argument("--rows", default="ram,random,mlp,cnn",
                    help="rows of the translated / cluttered tables: ram (every --glimpses), random, mlp, cnn")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each training")
    ap.add_argument("--jobs", type=int, default=1,
                    help="trainings at a time, each in its own process (2 with --threads 1 shares 2 cores)")
    ap.add_argument("--out", help="JSON path (default benchmarks/results/vision_<tables>.json)")
    ap.add_argument("--runs", help="keep the run directories under this folder")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="train nothing: merge the translated tables of these runs (one --seed each) into "
                         "mean and sd per glimpse count, the trend judged on the means")
    args = ap.parse_args()
    if args.merge:
        merged = merge_translated(args.merge)
        if args.out:
            Path(args.out).write_text(json.dumps(merged, indent=1) + "\n")
            print(f"wrote {args.out}")
        return
    global RUNS, THREADS, MINUTES
    RUNS = Path(args.runs) if args.runs else None
    THREADS, MINUTES = args.threads, args.minutes
    torch.set_num_threads(args.threads)
    tables = args.table or ["cnn", "translated", "cluttered"]
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": args.threads,
                           "jobs": args.jobs, "cpus": os.cpu_count(), "torch": torch.__version__,
                           "load_start": os.getloadavg()}
    t0 = time.perf_counter()
    for t in tables:
        print(f"== {t} ==", flush=True)
        if t == "cnn":
            out[t] = table_cnn(args.steps, [int(s) for s in args.seeds.split(",")], args.attention.split(","))
        elif t == "translated":
            out[t] = table_translated(args.steps, [int(g) for g in args.glimpses.split(",")], args.rows.split(","),
                                      args.jobs, args.seed)
        else:
            out[t] = table_cluttered(args.steps, args.rows.split(","), args.jobs, args.seed)
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    out["load_end"] = os.getloadavg()
    path = Path(args.out) if args.out else RESULTS / f"vision_{'_'.join(tables)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nwrote {path} ({out['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
