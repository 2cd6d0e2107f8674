"""backends.dispatch: the memo returns what the full walk would, and forgets what it must."""

from __future__ import annotations

import pytest
import torch

from attnkit.backends import BACKENDS, Backend, dispatch, get_backend, restrict_backends, select_backend
from attnkit.functional import attention, build_spec


def _walk(spec):
    """The choice without the memo."""
    return dispatch._choose(spec, dispatch.allowed_backends())[0]


@pytest.fixture(autouse=True)
def _fresh_memo():
    dispatch._MEMO.clear()
    yield
    dispatch._MEMO.clear()


def test_memo_hit_is_the_walks_choice_and_keys_on_what_decides():
    q = torch.randn(1, 2, 4, 8)
    spec = build_spec(q, q, q)
    assert select_backend(spec).name == "sdpa" == _walk(spec).name
    assert len(dispatch._MEMO) == 1
    assert select_backend(build_spec(q.clone(), q, q)).name == "sdpa"  # other tensors, same kind of call
    assert len(dispatch._MEMO) == 1
    # each of these changes the choice, so each is its own entry
    assert select_backend(build_spec(q, q, q, normalizer="sparsemax")).name == "math"
    with restrict_backends("chunked"):
        assert select_backend(spec).name == "chunked"
    assert select_backend(spec).name == "sdpa"
    assert len(dispatch._MEMO) == 3


def test_memo_sees_captured_grad_tensors_and_grad_mode():
    slope = torch.tensor(0.5, requires_grad=True)

    def mod(s, b, h, qi, ki):
        return s - slope * (qi - ki).abs()

    q = torch.randn(1, 2, 4, 8)
    with restrict_backends("chunked", "reference"):  # no small-call policy without math
        assert select_backend(build_spec(q, q, q, score_mod=mod)).name == "reference"  # chunked cannot reach slope
        with torch.no_grad():
            assert select_backend(build_spec(q, q, q, score_mod=mod)).name == "chunked"
        slope.requires_grad_(False)
        assert select_backend(build_spec(q, q, q, score_mod=mod)).name == "chunked"


def test_registering_a_backend_invalidates_the_memo():
    q = torch.randn(1, 2, 4, 8)
    spec = build_spec(q, q, q)
    assert select_backend(spec).name == "sdpa"

    class Eager(Backend):
        name = "test-eager"
        priority = 1000

        def forward(self, spec):
            raise AssertionError("never called")

    BACKENDS.add("test-eager", Eager())
    try:
        assert select_backend(spec).name == "test-eager"
    finally:
        BACKENDS.remove("test-eager")
    assert select_backend(spec).name == "sdpa"


def test_calls_that_probe_free_memory_are_not_memoised(monkeypatch):
    q = torch.randn(1, 1, 4096, 8)  # sparsemax runs on math only: 4096² x 3 floats = 192 MiB, so it probes
    spec = build_spec(q, q, q, normalizer="sparsemax")
    assert get_backend("math").probes_memory(spec)
    assert select_backend(spec).name == "math"
    assert not dispatch._MEMO
    small = build_spec(q[:, :, :4], q[:, :, :4], q[:, :, :4])
    assert select_backend(small).name == "sdpa" and len(dispatch._MEMO) == 1
    monkeypatch.setenv("ATTNKIT_MEMORY_LIMIT", "1024")  # now every check probes, memo or not
    with pytest.raises(ValueError, match="no backend can run this call"):
        attention(q[:, :, :64], q[:, :, :64], q[:, :, :64], scale=0.5)
