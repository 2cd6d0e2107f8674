"""attnkit: every attention mechanism the literature names, fast kernels for all of them,
and the tools to see inside. See README.md and docs/ARCHITECTURE.md (the layers, the contracts,
how to add a score, backend, mechanism, model, task or command)."""

__version__ = "0.1.0"

import os as _os

# OpenMP threads that have finished a parallel region wait passively (sleep) instead of spinning, unless
# the caller chose a policy: the additive kernel's workers run beside torch's OpenMP threads, and spinning
# ones take the cores from them on a shared machine (B=4, L=S=1024, D=128, fwd+bwd beside two busy
# processes: 411 ms spinning, 273 ms passive; unchanged when idle: 144 / 132 ms; benchmarks/RESULTS.md).
# libgomp reads it when torch loads it, so it applies when attnkit is imported before torch, as the CLI does.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import backends, functional, nn  # noqa: E402
from .functional import attention  # noqa: E402
from .nn.registry import create, list_mechanisms  # noqa: E402

__all__ = ["attention", "backends", "functional", "nn", "create", "list_mechanisms", "__version__"]
