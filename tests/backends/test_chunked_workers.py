"""The additive tiles run across query blocks on single-threaded workers (chunked/workers.py):
the same numbers as one thread and the float64 oracle, forward and backward, call after call."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from attnkit.backends import chunked_attention
from attnkit.backends.additive_tiles import COMPILED, _Compiled, additive_tiles
from attnkit.backends.chunked import kernel
from attnkit.backends.chunked.workers import run_split
from attnkit.core import reference
from attnkit.functional import build_spec


@pytest.fixture
def two_threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


def test_run_split_deals_round_robin_in_worker_order(two_threads) -> None:
    seen = run_split(2, list(range(7)), lambda share: (list(share), threading.current_thread().name,
                                                       torch.get_num_threads(), torch.is_grad_enabled()))
    assert [s[0] for s in seen] == [[0, 2, 4, 6], [1, 3, 5]]
    assert {s[1] for s in seen} == {"attnkit-tiles-0", "attnkit-tiles-1"}
    assert all(s[2] == 1 and s[3] is False for s in seen)  # one torch thread, no autograd
    assert torch.get_num_threads() == 2  # the caller keeps its threads
    # one item, or one worker: the calling thread runs it, with its threads
    assert run_split(2, [5], lambda share: (list(share), threading.current_thread().name)) == [
        ([5], threading.current_thread().name)]


def test_run_split_raises_a_worker_error_in_the_caller(two_threads) -> None:
    def fail(share):
        if 1 in share:
            raise ValueError("block 1 failed")
        return share

    with pytest.raises(ValueError, match="block 1 failed"):
        run_split(2, [0, 1], fail)
    assert run_split(2, [0, 1], list) == [[0], [1]]  # the workers still serve


def _inputs(dtype: torch.dtype):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, n, 8, generator=g, dtype=dtype, requires_grad=True) for n in (37, 29, 29))
    p = {"w_q": torch.randn(16, 8, generator=g, dtype=dtype, requires_grad=True),
         "w_k": torch.randn(16, 8, generator=g, dtype=dtype),
         "v": torch.randn(2, 16, generator=g, dtype=dtype, requires_grad=True)}
    mask = torch.rand(2, 1, 37, 29, generator=g) > 0.2
    mask[0, 0, 3] = False  # a query with no allowed key: output 0, zero gradients
    return q, k, v, p, mask


def test_additive_blocks_run_on_the_workers(two_threads, monkeypatch: pytest.MonkeyPatch) -> None:
    """The defect: every small tile op was split over the caller's threads (a barrier per op)."""
    where: set[tuple[str, int]] = set()
    original = kernel._forward_rows

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        where.add((threading.current_thread().name, torch.get_num_threads()))
        return original(*args, **kw)

    monkeypatch.setattr(kernel, "_forward_rows", spy)
    q, k, v, p, mask = _inputs(torch.float32)
    chunked_attention(build_spec(q, k, v, score="additive", score_params=p, mask=mask), compile=False)
    assert where and where <= {("attnkit-tiles-0", 1), ("attnkit-tiles-1", 1)}  # blocks go to whichever is free


@pytest.mark.parametrize("causal", [False, True])
def test_workers_match_the_oracle_and_one_thread(two_threads, causal: bool) -> None:
    q, k, v, p, mask = _inputs(torch.float64)
    spec = build_spec(q, k, v, score="additive", score_params=p, mask=mask, causal=causal)
    leaves = (q, k, v, p["w_q"], p["v"])
    ref = reference.run(spec).output
    g_ref = torch.autograd.grad(ref.sum(), leaves)
    got = chunked_attention(spec, block_q=8, block_k=8, compile=False).output  # 5 query blocks on 2 workers
    g_got = torch.autograd.grad(got.sum(), leaves)
    torch.testing.assert_close(got, ref)
    for a, b in zip(g_got, g_ref):
        torch.testing.assert_close(a, b)
    again = chunked_attention(spec, block_q=8, block_k=8, compile=False).output
    assert torch.equal(again, got)  # round robin: the same sums in the same order
    assert all(torch.equal(a, b) for a, b in zip(torch.autograd.grad(again.sum(), leaves), g_got))
    torch.set_num_threads(1)
    one = chunked_attention(spec, block_q=8, block_k=8, compile=False).output
    torch.testing.assert_close(one, got)
    for a, b in zip(torch.autograd.grad(one.sum(), leaves), g_got):
        torch.testing.assert_close(a, b)


def test_workers_pass_gradcheck(two_threads) -> None:
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 1, n, 3, generator=g, dtype=torch.float64, requires_grad=True) for n in (9, 7, 7))
    w_q, w_k = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    va = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)

    def f(q, k, v, va):  # type: ignore[no-untyped-def]
        spec = build_spec(q, k, v, score="additive", score_params={"w_q": w_q, "w_k": w_k, "v": va})
        return chunked_attention(spec, block_q=2, block_k=3, compile=False).output

    assert torch.autograd.gradcheck(f, (q, k, v, va))


def test_workers_under_inference_mode(two_threads) -> None:
    q, k, v, p, mask = _inputs(torch.float32)
    spec = build_spec(q.detach(), k.detach(), v.detach(), score="additive",
                      score_params={n: t.detach() for n, t in p.items()}, mask=mask)
    want = chunked_attention(spec, block_q=8, compile=False).output
    with torch.inference_mode():  # the output buffer is an inference tensor: written under the same mode
        got = chunked_attention(spec, block_q=8, compile=False).output
    torch.testing.assert_close(got, want)


def test_compiled_tiles_run_on_the_workers_single_threaded(two_threads, monkeypatch: pytest.MonkeyPatch) -> None:
    """The defect (second form): compiled tiles ran in the calling thread, each a small OpenMP region over
    torch's threads, so under a background load they degraded like the eager per-op split did; now they are
    built single-threaded (threads=1, inductor's C++ wrapper, which releases the GIL) and dealt to the workers."""
    where: set[tuple[str, int]] = set()
    asked: list[object] = []
    original, tiles = kernel._forward_rows, kernel.additive_tiles

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        where.add((threading.current_thread().name, torch.get_num_threads()))
        return original(*args, **kw)

    def eager_tiles(qp, kp, *, compiled, threads=None):  # type: ignore[no-untyped-def]
        asked.append((compiled, threads))
        return tiles(qp, kp, compiled=False)  # no compilation in a unit test: the policy is what is checked

    monkeypatch.setattr(kernel, "_forward_rows", spy)
    monkeypatch.setattr(kernel, "additive_tiles", eager_tiles)
    q, k, v, p, mask = _inputs(torch.float32)
    chunked_attention(build_spec(q, k, v, score="additive", score_params=p, mask=mask), compile=True)
    assert asked == [(True, 1)]  # compiled without an OpenMP region, for the workers
    assert where and where <= {("attnkit-tiles-0", 1), ("attnkit-tiles-1", 1)}  # blocks go to whichever is free


def test_single_threaded_tiles_are_built_with_the_cpp_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    """threads=1 selects inductor's C++ wrapper (its entry point releases the GIL); None keeps the default."""
    seen: list[object] = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: seen.append(kw.get("options")) or fn)
    tiles = _Compiled()
    tiles.get("pair", lambda x: x, threads=1)
    tiles.get("pair", lambda x: x)
    assert seen == [{"cpp.threads": 1, "cpp_wrapper": True}, None]


@pytest.mark.slow
def test_compiled_single_threaded_tile_releases_the_gil() -> None:
    """Slow (one real compilation): while a worker is inside a compiled tile call, this thread runs Python.

    This thread stamps each turn of a Python loop while a worker makes 10 calls of about 0.1 s. A call
    that holds the GIL (inductor's default Python wrapper: a pybinding called with the GIL held) stops
    this thread for the whole call, one gap of at least the call's length per call (measured: 10 of 10,
    load 3.8); released (the C++ wrapper), the gaps are the scheduler's (measured: none over 15 ms)."""
    tiles = additive_tiles(torch.ones(1, 1, 1, 8), torch.ones(1, 1, 1, 8), compiled=True, threads=1)
    g = torch.Generator().manual_seed(0)
    qf, kf = torch.rand(4, 1, 2048, 128, generator=g) + 0.5, torch.rand(4, 1, 1024, 128, generator=g) + 0.5
    v = torch.randn(128, generator=g)
    tiles.pair(qf, kf, v)  # compile here, not in the measured loop
    assert COMPILED.failed is None, COMPILED.failed
    calls: list[float] = []
    done = threading.Event()

    def worker() -> None:
        torch.set_num_threads(1)
        for _ in range(10):
            t0 = time.perf_counter()
            tiles.pair(qf, kf, v)
            calls.append(time.perf_counter() - t0)
        done.set()

    stamps: list[float] = []
    t = threading.Thread(target=worker)
    t.start()
    while not done.is_set():
        stamps.append(time.perf_counter())
    t.join()
    shortest = min(calls)
    long_gaps = sum(1 for a, b in zip(stamps, stamps[1:]) if b - a > 0.8 * shortest)
    assert long_gaps <= 3, f"{long_gaps} stops of this thread as long as a call ({shortest * 1e3:.0f} ms): held GIL"


def test_run_split_groups_are_fixed_whoever_runs_them(two_threads) -> None:
    """groups=G: the workers take groups as they finish one, but group g is always items[g::G] and its
    result comes back at place g, so sums over the results are made in the same order every call."""
    items = list(range(10))
    got = run_split(2, items, lambda share: (list(share), threading.current_thread().name), groups=4)
    assert [share for share, _ in got] == [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]]
    assert {name for _, name in got} <= {"attnkit-tiles-0", "attnkit-tiles-1"}
    assert [s for s, _ in run_split(2, items, lambda share: (list(share), 0), groups=99)] == [[i] for i in items]
    assert run_split(2, items, list, groups=1) == [items[0::2], items[1::2]]  # never fewer groups than workers
