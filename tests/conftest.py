"""Shared test settings: seeds, tolerances, hypothesis profile."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

# one thread per xdist worker (make test runs 2 workers on 2 cores), else 2
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One torch thread, as in the child processes of the reliability tests (and far faster than two
    on a busy machine); the previous count is restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
