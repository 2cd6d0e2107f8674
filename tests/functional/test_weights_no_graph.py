"""attention_weights() and column_sums() are diagnostics: inputs that require grad (the
README's snippet) must not make them build an autograd graph over every tile (issue 12:
17.6 GB instead of 1.3 GB at L = 2048)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from attnkit.core import reference
from attnkit.functional import attention_weights, build_spec, column_sums

SRC = Path(__file__).resolve().parents[2] / "src"


def _additive_inputs(L: int, S: int, E: int, D: int, requires_grad: bool):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 2, L, E, generator=g, dtype=torch.float64, requires_grad=requires_grad)
    k = torch.randn(2, 2, S, E, generator=g, dtype=torch.float64, requires_grad=requires_grad)
    p = {"w_q": torch.randn(D, E, generator=g, dtype=torch.float64, requires_grad=requires_grad),
         "w_k": torch.randn(D, E, generator=g, dtype=torch.float64, requires_grad=requires_grad),
         "v": torch.randn(D, generator=g, dtype=torch.float64, requires_grad=requires_grad)}
    return q, k, p


def _saved_bytes(fn):
    """(result, bytes autograd saved for backward while fn ran)."""
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(saved)


def test_column_sums_and_attention_weights_build_no_graph_for_inputs_that_require_grad():
    q, k, p = _additive_inputs(9, 7, 4, 5, requires_grad=True)
    mask = torch.rand(2, 1, 9, 7, generator=torch.Generator().manual_seed(1)) > 0.3
    kw = dict(score="additive", score_params=p, mask=mask)
    ref_w = reference.run(build_spec(q.detach(), k.detach(), k.detach(), return_weights=True, score="additive",
                                     score_params={n: t.detach() for n, t in p.items()}, mask=mask)).weights
    cov, cov_saved = _saved_bytes(lambda: column_sums(q, k, block_q=4, block_k=2, **kw))
    w, w_saved = _saved_bytes(lambda: attention_weights(q, k, rows=(2, 6), heads=[1], block_q=2, block_k=3, **kw))
    for name, t, saved in (("column_sums", cov, cov_saved), ("attention_weights", w, w_saved)):
        assert t.grad_fn is None and not t.requires_grad, name
        assert saved == 0, f"{name} saved {saved} bytes for a backward nobody asked for"
    torch.testing.assert_close(cov, ref_w.sum(-2))  # the values are unchanged
    torch.testing.assert_close(w, ref_w[:, [1], 2:6])
    assert torch.is_grad_enabled()  # and the caller's grad mode is left as it was


def test_column_sums_peak_memory_is_one_tile_not_a_graph():
    """The README's call at L = S = 512, D = 64 with inputs that require grad, in a fresh process.
    A graph over the tiles holds tanh(qp + kp) of both passes, 2·L·S·D·4 B = 128 MiB; without one the
    peak is a few (block_q, block_k, D) tiles of 2 MiB each. The bound, 40 MiB, sits between."""
    script = textwrap.dedent(
        """
        import resource, sys
        import torch
        torch.set_num_threads(1)
        from attnkit.functional import column_sums
        L, E, D = 512, 64, 64
        g = torch.Generator().manual_seed(0)
        q, k = (torch.randn(1, L, E, generator=g, requires_grad=True) for _ in range(2))
        p = {"w_q": torch.randn(D, E, generator=g) / E**0.5, "w_k": torch.randn(D, E, generator=g) / E**0.5,
             "v": torch.randn(D, generator=g)}
        kw = dict(score="additive", score_params=p, block_q=64, block_k=128)
        column_sums(q[:, :64], k[:, :128], **kw)  # warm-up: lazy imports and first allocations
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cov = column_sums(q, k, **kw)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        assert cov.shape == (1, L) and abs(float(cov.sum()) - L) < 1e-2, float(cov.sum())
        print((after - before) * unit)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    grew = int(res.stdout.strip().splitlines()[-1])
    assert grew < 40 * 2**20, f"column_sums raised the peak by {grew / 2**20:.0f} MiB"
