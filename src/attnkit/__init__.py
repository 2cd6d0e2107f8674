"""attnkit: every attention mechanism the literature names, fast kernels for all of them,
and the tools to see inside. See README.md and docs/ARCHITECTURE.md (the layers, the contracts,
how to add a score, backend, mechanism, model, task or command)."""

__version__ = "0.1.0"

from . import backends, functional, nn  # noqa: E402
from .functional import attention  # noqa: E402
from .nn.registry import create, list_mechanisms  # noqa: E402

__all__ = ["attention", "backends", "functional", "nn", "create", "list_mechanisms", "__version__"]
