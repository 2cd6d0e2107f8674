"""``import attnkit`` makes idle OpenMP threads wait passively unless the caller chose a policy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import attnkit, os; print(os.environ['OMP_WAIT_POLICY'])"


@pytest.mark.parametrize("given, want", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_import_sets_passive_waiting_unless_chosen(given, want):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == want
