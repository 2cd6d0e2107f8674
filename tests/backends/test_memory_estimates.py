"""Memory estimates bound the measured peak (the guard refuses what cannot fit, so an
estimate below the real peak lets a call be accepted and then killed for memory).

Peaks are measured the way ``attnkit bench`` measures them (:mod:`attnkit.bench.memory`):
the resident high-water mark of one call, reset just before it, in a fresh process whose
allocator returns freed blocks (tracemalloc does not see torch's allocations). Sizes are
small (tens of MiB) so the whole check takes seconds; the weights dominate every case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attnkit.bench.memory import MALLOC_ENV, reset_peak

ROOT = Path(__file__).resolve().parents[2]

_CHILD = r'''
import json, sys
import torch
torch.set_num_threads(1)
from attnkit.backends import get_backend
from attnkit.bench.memory import max_rss_kb, measure_peak
from attnkit.functional import attention, build_spec

results = []
for case in json.loads(sys.argv[1]):
    B, H, L, S, E, D = case["B"], case["H"], case["L"], case["S"], case["E"], case["D"]
    g = torch.Generator().manual_seed(0)
    grad = case["grad"]
    q, k, v = (torch.randn(B, H, n, E, generator=g).requires_grad_(grad) for n in (L, S, S))
    kw = dict(return_weights=case["weights"])
    if case["score"] == "additive":
        kw.update(score="additive", score_params={"w_q": torch.randn(D, E, generator=g) / E ** 0.5,
                                                   "w_k": torch.randn(D, E, generator=g) / E ** 0.5,
                                                   "v": torch.randn(D, generator=g)})
    if case.get("causal"):
        kw["causal"] = True
    est = get_backend(case["backend"]).memory_bytes(build_spec(q, k, v, **kw))

    def step():
        with torch.set_grad_enabled(grad):
            return attention(q, k, v, backend=case["backend"], **kw)

    peak_mb, _ = measure_peak(step, warm=True, cold_base_kb=max_rss_kb())
    results.append({"estimate": est, "peak": peak_mb * 2 ** 20})
print("RESULT " + json.dumps(results))
'''

#: (backend, score, return_weights, grad, B, H, L, S, E, D)
CASES = [
    ("chunked", "scaled_dot", True, False, 1, 2, 2048, 2048, 32, 0),
    ("chunked", "scaled_dot", True, True, 1, 2, 2048, 2048, 32, 0),
    ("chunked", "additive", True, False, 1, 2, 1024, 1024, 16, 16),
    ("chunked", "additive", True, True, 1, 2, 512, 512, 16, 16),
    ("chunked", "scaled_dot", False, True, 2, 2, 2048, 2048, 32, 0),
    ("chunked", "additive", False, True, 1, 2, 1024, 1024, 16, 16),
    ("math", "scaled_dot", True, True, 1, 2, 1536, 1536, 32, 0),
    ("math", "additive", False, False, 1, 2, 512, 512, 16, 16),
    ("sdpa", "scaled_dot", True, False, 1, 2, 2048, 2048, 32, 0),
]


@pytest.mark.skipif(not reset_peak(), reason="needs Linux's resettable resident high-water mark")
def test_memory_estimates_bound_the_measured_peak():
    jobs = [dict(backend=b, score=s, weights=w, grad=gr, B=B_, H=H_, L=L_, S=S_, E=E_, D=D_)
            for b, s, w, gr, B_, H_, L_, S_, E_, D_ in CASES]
    env = {**os.environ, **MALLOC_ENV, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(jobs)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout.split("RESULT ", 1)[1])
    report = [f"{c[0]} {c[1]} weights={c[2]} grad={c[3]}: estimate {x['estimate'] / 2**20:.1f} MiB, "
              f"peak {x['peak'] / 2**20:.1f} MiB" for c, x in zip(CASES, results)]
    for x in results:
        assert x["peak"] > 4 * 2 ** 20, "\n".join(report)  # the call really allocated: the check measures it
        assert x["estimate"] >= 1.05 * x["peak"], "estimate below the measured peak:\n" + "\n".join(report)
        assert x["estimate"] <= 4 * x["peak"] + (16 << 20), "estimate far above the peak:\n" + "\n".join(report)
