"""Peak memory of one steady-state call, measured on the process's resident set (CPU).

peak = VmHWM after the call - VmRSS before it, with the high-water mark reset just before
the call (``/proc/self/clear_refs``), so compilation and warm-up allocations are not
counted. Run it in a fresh process per configuration (:func:`fresh_process`) whose
allocator returns freed blocks to the OS (:data:`MALLOC_ENV`), so reused memory does
not hide allocations. Where the reset is unavailable (not Linux) the fallback is the
growth of ``ru_maxrss`` since ``cold_base_kb``, which includes the warm-up.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any, Callable

__all__ = ["MALLOC_ENV", "answer", "fresh_process", "max_rss_kb", "measure_peak", "reset_peak", "rss_kb"]

#: glibc settings for the measuring process: blocks >= 64 KiB are mmapped and returned on free.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}

#: printed before the one JSON line a child process answers with.
_TAG = "BENCH "


def rss_kb(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB ("VmRSS", "VmHWM"); None where it cannot be read."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset the process's resident high-water mark (VmHWM); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def max_rss_kb() -> int:
    """The process's lifetime peak resident set (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_peak(step: Callable[[], Any], *, warm: bool, cold_base_kb: int) -> tuple[float, float]:
    """(peak MB, seconds) of one call of ``step``; ``warm`` calls it once, unmeasured, first.

    ``cold_base_kb`` is :func:`max_rss_kb` taken before the configuration was built: the
    fallback's baseline where the high-water mark cannot be reset.
    """
    if warm:
        step()  # compilation, lazy init: outside the measured call
    gc.collect()
    reset = reset_peak()
    base = rss_kb("VmRSS")
    t0 = time.perf_counter()
    step()
    elapsed = time.perf_counter() - t0
    hwm = rss_kb("VmHWM")
    if reset and base is not None and hwm is not None:
        return max(0.0, (hwm - base) / 1024), elapsed
    return max(0.0, (max_rss_kb() - cold_base_kb) / 1024), elapsed


def answer(result: dict[str, Any]) -> None:
    """Print a child's result as the tagged JSON line :func:`fresh_process` reads."""
    print(_TAG + json.dumps(result), flush=True)


def fresh_process(entry: str, job: dict[str, Any], *, memory_env: bool) -> dict[str, Any]:
    """Run ``entry`` ("package.module:function", called with the job as a JSON string) in a new
    Python process and return the dict it :func:`answer`\\ s; an error dict if it died.

    ``memory_env`` sets :data:`MALLOC_ENV` in the child (for :func:`measure_peak`).
    """
    module, func = entry.split(":")
    env = dict(os.environ)
    if memory_env:
        env.update(MALLOC_ENV)
    cmd = [sys.executable, "-c", f"import sys; from {module} import {func}; {func}(sys.argv[1])", json.dumps(job)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in r.stdout.splitlines()[::-1]:
        if line.startswith(_TAG):
            return json.loads(line[len(_TAG):])
    return {"error": f"exit status {r.returncode} (killed: out of memory?) {r.stderr.strip()[-200:]}"}
