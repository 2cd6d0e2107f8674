"""Worker threads that each run whole query blocks of a tiled kernel on one torch thread.

A tile's operations are small (a few hundred microseconds); split over threads inside
each operation, every one ends at a barrier that waits for the slowest thread, and on a
shared machine the slowest thread is often waiting for a core: many small parallel
regions degrade far more under load than a few large ones. Here the parallelism is across
query blocks instead: ``W`` workers, each with ``torch.set_num_threads(1)``, run their
blocks from start to end without meeting each other. The blocks form fixed groups (group g
holds blocks g, g + G, ...) that the workers take as they finish one (:func:`run_split`); each
group's result comes back at its place, so the order of every sum is fixed and the results
are the same from call to call, whichever worker ran a group.

The workers run under ``torch.no_grad()`` (tile work with closed-form gradients only), or under
``torch.inference_mode()`` when the caller is.

Eager tiles run here because ATen ops release the GIL. Compiled tiles run here too, built without
an OpenMP region and with inductor's C++ wrapper, whose entry point releases the GIL for the
whole call: with the default Python wrapper the call held it, and the workers took turns (a call
cost what one thread costs; benchmarks/RESULTS.md, both 2026-12-02 sections).
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Callable, Sequence, TypeVar

import torch

__all__ = ["run_split", "worker_count"]

T = TypeVar("T")
R = TypeVar("R")


class _Job:
    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        #: the caller's inference mode (tensors made under it may only be written under it)
        self.inference = torch.is_inference_mode_enabled()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _Workers:
    """``n`` daemon threads with one torch thread each, fed through one queue per thread."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pid = os.getpid()
        self.queues: list[queue.SimpleQueue[_Job]] = [queue.SimpleQueue() for _ in range(n)]
        threads = torch.get_num_threads()
        ready = threading.Barrier(n + 1)
        for i, q in enumerate(self.queues):
            threading.Thread(target=self._loop, args=(q, ready), name=f"attnkit-tiles-{i}", daemon=True).start()
        ready.wait()
        # torch.set_num_threads(1) in a worker also set the count torch gives threads started later
        torch.set_num_threads(threads)

    @staticmethod
    def _loop(q: "queue.SimpleQueue[_Job]", ready: threading.Barrier) -> None:
        # torch sets a thread's count on its first parallel op from the process-wide one; take that
        # first (get_num_threads does it), so the 1 below is not overwritten by the caller's count later
        torch.get_num_threads()
        torch.set_num_threads(1)
        ready.wait()
        while True:
            job = q.get()
            try:
                with torch.inference_mode() if job.inference else torch.no_grad():
                    job.result = job.fn()
            except BaseException as e:  # noqa: BLE001  (re-raised in the calling thread)
                job.error = e
            job.done.set()

    def run(self, fns: Sequence[Callable[[], R]]) -> list[R]:
        jobs = [_Job(fn) for fn in fns]
        for q, job in zip(self.queues, jobs):
            q.put(job)
        for job in jobs:
            job.done.wait()
        for job in jobs:
            if job.error is not None:
                raise job.error
        return [job.result for job in jobs]


_POOLS: dict[int, _Workers] = {}
_LOCK = threading.Lock()


def _pool(n: int) -> _Workers:
    with _LOCK:
        pool = _POOLS.get(n)
        if pool is None or pool.pid != os.getpid():  # a forked child has none of its parent's threads
            pool = _POOLS[n] = _Workers(n)
        return pool


def worker_count() -> int:
    """How many workers a tiled call started from this thread uses: torch's thread count here."""
    return max(1, torch.get_num_threads())


def run_split(
    workers: int, items: Sequence[T], fn: Callable[[Sequence[T]], R], *, groups: int | None = None
) -> list[R]:
    """``fn(items[g::G])`` for each of G groups, on ``workers`` threads at once; the results in group order.

    G = ``groups`` (at least the worker count, at most ``len(items)``; None: one group per worker). The
    groups are fixed by G alone and each result is returned at its group's place, so what is summed, and
    in which order, does not depend on which worker ran a group: the workers take the next group as they
    finish one, and a worker that a busy machine slows down takes fewer, instead of the others waiting
    for it. One worker (or one item) runs ``fn(items)`` in the calling thread, with its threads and grad mode.
    """
    n = min(workers, len(items))
    if n <= 1:
        return [fn(items)]
    g = n if groups is None else max(n, min(groups, len(items)))
    shares = [items[i::g] for i in range(g)]
    if g == n:
        return _pool(n).run([lambda share=share: fn(share) for share in shares])
    results: list[Any] = [None] * g
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(g):
        todo.put(i)

    def take() -> None:
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            results[i] = fn(shares[i])

    _pool(n).run([take] * n)
    return results
