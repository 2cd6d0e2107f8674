"""Running the suites: every configuration in a fresh process, timed and measured, as rows.

Each configuration runs in a fresh Python process per implementation (``quick`` runs them
in this process): one process times it (:func:`attnkit.bench.timing.time_calls`), a second
one, with the allocator set up for it, measures its peak memory
(:func:`attnkit.bench.memory.measure_peak`). Paired mode times ours and the peer
alternately in one process (:func:`attnkit.bench.timing.time_paired`). Configurations
that cannot fit in the memory available are reported, not run.

    for row in rows(["dot"], ["fwd"], sizes=None, peers=None, options=Options(quick=True)):
        print(row["ms_median"], row["peer_ms_median"], row["speedup"])
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from ..backends import available_bytes, format_bytes
from . import memory as _memory
from . import suites
from .timing import time_calls, time_paired

__all__ = ["Options", "child_main", "measure", "measure_paired", "rows", "run_config", "run_paired"]

#: the child process's entry point (see :func:`attnkit.bench.memory.fresh_process`)
CHILD = "attnkit.bench.runner:child_main"


@dataclass(frozen=True)
class Options:
    """How to run: ``warmup`` untimed and ``repeats`` timed calls, torch ``threads``,
    whether to measure peak ``memory``, and ``quick`` (in-process, no fresh processes)."""

    warmup: int = 3
    repeats: int = 10
    threads: int = 2
    memory: bool = True
    quick: bool = False


def _error(e: BaseException) -> dict[str, Any]:
    return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}


def measure(cfg: dict[str, Any], *, warmup: int, repeats: int, threads: int, memory: bool) -> dict[str, Any]:
    """Time (``{"ms": [...]}``) and optionally measure (``"peak_mb"``) one configuration in this process.

    ``warmup=0, repeats=1`` with memory: one cold call, timed and measured at once (huge sizes);
    ``repeats=0``: memory only.
    """
    torch.set_num_threads(threads)
    cold_base = _memory.max_rss_kb()
    step = suites.build_step(cfg)
    res: dict[str, Any] = {}
    if memory:
        single = warmup == 0 and repeats == 1
        peak_mb, elapsed = _memory.measure_peak(step, warm=not single, cold_base_kb=cold_base)
        res["peak_mb"] = peak_mb
        if single:
            res["ms"] = [elapsed * 1e3]
            return res
    if repeats > 0:
        res["ms"] = list(time_calls(step, warmup=warmup, repeats=repeats).scaled(1e3).samples)
    return res


def measure_paired(ours: dict[str, Any], peer: dict[str, Any], *, warmup: int, repeats: int,
                   threads: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Time two configurations alternately in this process (:func:`attnkit.bench.timing.time_paired`)."""
    torch.set_num_threads(threads)
    a, b = suites.build_step(ours), suites.build_step(peer)
    sa, sb = time_paired(a, b, warmup=warmup, repeats=repeats)
    return {"ms": list(sa.scaled(1e3).samples)}, {"ms": list(sb.scaled(1e3).samples)}


def child_main(arg: str) -> None:
    """Entry point of the per-configuration process: reads the job (JSON), answers one JSON line."""
    job = json.loads(arg)
    try:
        if "peer_cfg" in job:
            a, b = measure_paired(job["cfg"], job["peer_cfg"], warmup=job["warmup"], repeats=job["repeats"],
                                  threads=job["threads"])
            _memory.answer({"ours": a, "peer": b})
            return
        res = measure(job["cfg"], warmup=job["warmup"], repeats=job["repeats"], threads=job["threads"],
                      memory=job["memory"])
    except (RuntimeError, MemoryError, ValueError) as e:
        res = _error(e)
    _memory.answer(res)


def _fresh(job: dict[str, Any], *, memory_env: bool) -> dict[str, Any]:
    return _memory.fresh_process(CHILD, job, memory_env=memory_env)


def run_config(cfg: dict[str, Any], options: Options) -> dict[str, Any]:
    """Measurements of one configuration (``cfg`` names its ``impl``): ``{"ms", "peak_mb"}`` or ``{"error"}``."""
    need = suites.needed_bytes(cfg)
    have = available_bytes(torch.device("cpu"))
    if need and have is not None and need > 0.8 * have:
        return {"error": f"needs about {format_bytes(need)}, {format_bytes(have)} available: cannot run"}
    repeats = cfg.get("repeats", options.repeats)
    warmup = cfg.get("warmup", options.warmup)
    if options.quick:
        try:
            return measure(cfg, warmup=warmup, repeats=repeats, threads=options.threads, memory=options.memory)
        except (RuntimeError, MemoryError) as e:
            return _error(e)
    job = {"cfg": cfg, "warmup": warmup, "repeats": repeats, "threads": options.threads, "memory": False}
    if warmup == 0 and repeats == 1 and options.memory:  # huge: one call, timed and measured in one child
        return _fresh({**job, "memory": True}, memory_env=True)
    res = _fresh(job, memory_env=False)
    if options.memory and "error" not in res:
        mem = _fresh({**job, "memory": True, "repeats": 0}, memory_env=True)
        res["peak_mb"] = mem.get("peak_mb")
        if "error" in mem:
            res["memory_error"] = mem["error"]
    return res


def run_paired(cfg: dict[str, Any], ours: str, peer: str, options: Options) -> tuple[dict, dict]:
    """Ours and the peer timed alternately in one fresh process (memory: one process each)."""
    a_cfg, b_cfg = {**cfg, "impl": ours}, {**cfg, "impl": peer}
    if options.quick:
        a, b = measure_paired(a_cfg, b_cfg, warmup=options.warmup, repeats=options.repeats,
                              threads=options.threads)
    else:
        job = {"cfg": a_cfg, "peer_cfg": b_cfg, "warmup": options.warmup, "repeats": options.repeats,
               "threads": options.threads, "memory": False}
        res = _fresh(job, memory_env=False)
        if "error" in res:
            return res, res
        a, b = res["ours"], res["peer"]
    if options.memory:
        for c, r in ((a_cfg, a), (b_cfg, b)):
            mem = run_config(c, dataclasses.replace(options, repeats=0)) if options.quick else _fresh(
                {"cfg": c, "warmup": 0, "repeats": 0, "threads": options.threads, "memory": True}, memory_env=True)
            r["peak_mb"] = mem.get("peak_mb")
    return a, b


def rows(suite_names: list[str], modes: list[str], *, sizes: list[int] | None, peers: set[str] | None,
         options: Options, paired: bool = False) -> Iterator[dict[str, Any]]:
    """One row per (configuration, peer) of every suite, as each is measured.

    ``peers`` keeps only those peers (None: every peer of each suite); ``paired`` times ours
    and each peer alternately in one process (rows get ``"paired": True``).
    """
    for suite in suite_names:
        wanted = [p for p in suites.PEERS.get(suite, ()) if peers is None or p in peers]
        for cfg in suites.configs(suite, modes, sizes, options.quick):
            if paired:
                for peer in wanted:
                    ours, theirs = run_paired(cfg, suites.OURS[suite], peer, options)
                    row = suites.make_row(cfg, ours, peer, theirs)
                    row["paired"] = True
                    yield row
                continue
            ours = run_config({**cfg, "impl": suites.OURS[suite]}, options)
            for peer in wanted:
                yield suites.make_row(cfg, ours, peer, run_config({**cfg, "impl": peer}, options))
