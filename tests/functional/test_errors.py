"""Bad input: a ValueError/TypeError that names the argument and the fix."""

from __future__ import annotations

import pytest
import torch

from attnkit.core.normalize import Gumbel
from attnkit.core.scores import Additive, Cosine, General, Location
from attnkit.functional import attention, masks

q4 = torch.randn(2, 2, 3, 4)
k4 = torch.randn(2, 2, 5, 4)
v4 = torch.randn(2, 2, 5, 6)

CASES = [
    (lambda: attention(q4, torch.randn(2, 2, 5, 8), v4), ValueError, "key has 8 features but query has 4"),
    (lambda: attention(q4, k4, torch.randn(2, 2, 6, 6)), ValueError, "must agree on (B, H, S)"),
    (lambda: attention(q4, k4[0], v4[0]), ValueError, "must all be 3-D or all 4-D"),
    (lambda: attention(q4[0, 0], k4[0, 0], v4[0, 0]), ValueError, "expected (B, H, N, E)"),
    (lambda: attention(q4, torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 6)), ValueError, "batch"),
    (lambda: attention(torch.randn(2, 3, 3, 4), k4, v4), ValueError, "must divide the query heads"),
    (lambda: attention(q4, k4.double(), v4), TypeError, "dtypes differ"),
    (lambda: attention(q4.long(), k4.long(), v4.long()), TypeError, "floating point"),
    (lambda: attention([1.0], k4, v4), TypeError, "query must be a torch.Tensor"),
    (lambda: attention(q4, k4, v4, mask=torch.ones(4, 5, dtype=torch.bool)), ValueError, "does not broadcast"),
    (lambda: attention(q4, k4, v4, mask=torch.ones(3, 5, dtype=torch.int64)), TypeError, "mask has dtype"),
    (lambda: attention(q4, k4, v4, score="dott"), ValueError, "did you mean 'dot'"),
    (lambda: attention(q4, k4, v4, normalizer="softmaxx"), ValueError, "unknown normalizer 'softmaxx'"),
    (lambda: attention(q4, k4, v4, dropout_p=1.5), ValueError, "dropout_p must be in [0, 1)"),
    (lambda: attention(q4, k4, v4, scale=float("nan")), ValueError, "scale must be a finite number"),
    (lambda: attention(q4, k4, v4, causal="left"), ValueError, "causal must be"),
    (lambda: attention(torch.randn(1, 1, 5, 4), torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4),
                       causal="bottom_right"), ValueError, "needs S >= L"),
    (lambda: attention(q4, k4, v4, return_log_prob=True), ValueError, "stochastic normalizer"),
    (lambda: attention(q4.masked_fill(q4 > 1, float("nan")), k4, v4, check_finite=True), ValueError,
     "query contains NaN"),
    (lambda: attention(q4, k4, v4, mask=torch.tensor([0.0, float("nan"), 0.0, 0.0, 0.0]), check_finite=True),
     ValueError, "mask contains NaN or +inf"),
    (lambda: attention(q4, k4, v4, mask=torch.full((3, 5), float("inf")), check_finite=True), ValueError,
     "mask contains NaN or +inf"),
    (lambda: attention(q4, k4, v4, score="general", score_params={"weight": torch.full((4, 4), float("nan"))},
                       check_finite=True), ValueError, "score parameter 'weight' of the 'general' score"),
    (lambda: attention(q4, k4, v4, score=Additive(torch.randn(8, 4), torch.randn(8, 4),
                                                  torch.tensor([float("inf")] * 8)), check_finite=True),
     ValueError, "score parameter 'v' of the 'additive' score contains NaN or inf"),
    (lambda: attention(q4, k4, v4, score=General(torch.randn(4, 3))), ValueError, "must be (4, 4)"),
    (lambda: attention(q4, k4, v4, score=Additive(torch.randn(8, 3), torch.randn(8, 4), torch.randn(8))),
     ValueError, "w_q must be (D, 4)"),
    (lambda: Additive(torch.randn(8, 4), torch.randn(7, 4), torch.randn(8)), ValueError, "one D"),
    (lambda: Cosine(-1.0), ValueError, "beta (key strength) must be"),
    (lambda: attention(q4, k4, v4, score=Location(torch.randn(3, 4))), ValueError, "max_source_len"),
    (lambda: attention(q4, k4, v4, score="general"), TypeError, "score 'general'"),
    (lambda: attention(q4, k4, v4, backend="nope"), ValueError, "unknown backend 'nope'"),
    (lambda: Gumbel(tau=0), ValueError, "tau (temperature) must be > 0"),
    (lambda: masks.window_mask(3, 4, -1), ValueError, "half_width (D)"),
    (lambda: masks.lengths_mask(torch.tensor([5]), 4), ValueError, "lengths must lie in [0, 4]"),
    (lambda: masks.gaussian_bias(4, torch.zeros(2), sigma=0.0), ValueError, "sigma must be > 0"),
]


@pytest.mark.parametrize("call,exc,message", CASES, ids=[c[2] for c in CASES])
def test_error_names_argument_and_fix(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert message in str(info.value)


def test_check_finite_lets_a_float_mask_forbid_keys_with_minus_inf():
    m = torch.zeros(3, 5)
    m[:, 0] = float("-inf")
    out = attention(q4, k4, v4, mask=m, check_finite=True)
    torch.testing.assert_close(out, attention(q4, k4, v4, mask=m))


def test_forced_backend_lists_reasons():
    from attnkit.backends import BACKENDS, Backend

    class NoMask(Backend):
        name = "test-nomask"
        supports_mask = False

        def forward(self, spec):
            raise AssertionError("never called")

    BACKENDS.add("test-nomask", NoMask())
    try:
        with pytest.raises(ValueError, match="backend 'test-nomask' cannot run this call: masks are not supported"):
            attention(q4, k4, v4, mask=torch.ones(3, 5, dtype=torch.bool), backend="test-nomask")
    finally:
        BACKENDS.remove("test-nomask")
