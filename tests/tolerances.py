"""Per-dtype tolerances for comparing a path against the float64 reference (one table)."""

from __future__ import annotations

import torch

#: (rtol, atol) per dtype for comparing a path against the float64 reference.
TOL = {
    torch.float64: (1e-9, 1e-10),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (5e-2, 5e-2),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None) -> None:
    rtol, atol = TOL[dtype or actual.dtype]
    torch.testing.assert_close(actual.to(expected.dtype), expected, rtol=rtol, atol=atol)
