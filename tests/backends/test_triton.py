"""Triton backends: refused on CPU without the interpreter; correct under TRITON_INTERPRET=1.

The interpreter must be switched on before triton is imported, so the kernel
checks run the conformance suite (restricted to the triton backends, float32)
in a fresh subprocess with TRITON_INTERPRET=1. Shapes there are tiny.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnkit.backends import get_backend
from attnkit.functional import build_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1", reason="CPU-only check")
def test_triton_backends_explain_why_they_cannot_run_here():
    q = torch.randn(1, 1, 4, 8)
    spec = build_spec(q, q, q)
    for name in ("triton_dot", "triton_additive"):
        reasons = get_backend(name).not_supported_reasons(spec)
        assert any("needs a CUDA GPU" in r or "triton is not installed" in r for r in reasons), reasons
    assert any("is not additive" in r for r in get_backend("triton_additive").not_supported_reasons(spec))


def test_triton_kernels_match_reference_under_interpreter():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider",
           str(ROOT / "tests/backends/test_conformance.py"),
           "-k", "triton and (float32 or grouped or empty_rows_give or nan_in or one_dim) "
           "and not cosine and not location"]
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    tail = r.stdout[-3000:] + r.stderr[-2000:]
    assert r.returncode == 0, tail
    passed = int(re.search(r"(\d+) passed", r.stdout).group(1))
    assert passed >= 30, tail  # both kernels ran across scores and mask kinds, not just skipped


_BOTH_FORMS = r'''
import torch
from attnkit.backends.triton import triton_attention
from attnkit.core import reference
from attnkit.functional import build_spec
g = torch.Generator().manual_seed(0)
for scale in (0.3, 40.0):  # separable exp(2qp)·exp(2kp) form, then per-pair exp past |qp| > 20
    q, k, v = (torch.randn(2, 2, n, 6, generator=g, requires_grad=True) for n in (9, 11, 11))
    p = {"w_q": scale * torch.randn(7, 6, generator=g), "w_k": scale * torch.randn(7, 6, generator=g),
         "v": torch.randn(7, generator=g, requires_grad=True)}
    mask = torch.rand(2, 1, 9, 11, generator=g) > 0.3
    spec = build_spec(q, k, v, score="additive", score_params=p, mask=mask)
    out = triton_attention(spec).output
    ref = reference.run(spec).output
    torch.testing.assert_close(out, ref.float(), rtol=2e-5, atol=2e-5)
    ga = torch.autograd.grad(out.sum(), (q, k, v, p["v"]))
    gb = torch.autograd.grad(ref.sum(), (q, k, v, p["v"]))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b.float(), rtol=1e-4, atol=1e-4)
    print("ok", scale)
'''


def test_triton_additive_separable_and_per_pair_forms_under_interpreter():
    """The kernels' two ways of forming tanh (exp(2qp)·exp(2kp), or exp per pair beyond the
    separable range) both match the float64 oracle, forward and gradients."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT / "src")}
    env.pop("PYTEST_XDIST_WORKER", None)
    r = subprocess.run([sys.executable, "-c", _BOTH_FORMS], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert r.stdout.split() == ["ok", "0.3", "ok", "40.0"]
