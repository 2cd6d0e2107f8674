"""Kernels behind ``attnkit.functional.attention``; see :mod:`attnkit.backends.base`."""

from .base import (
    BACKENDS,
    Backend,
    backend_names,
    get_backend,
    register_backend,
    restrict_backends,
    select_backend,
)
from . import math as _math  # noqa: F401  (registers "math" and "reference")
from . import sdpa as _sdpa  # noqa: F401  (registers "sdpa")
from . import chunked as _chunked  # noqa: F401  (registers "chunked")
from . import triton as _triton  # noqa: F401  (registers "triton_additive", "triton_dot"; imports triton lazily)
from .base import available_bytes, format_bytes
from .chunked import chunked_attention
from .weights import attention_weights, column_sums

__all__ = [
    "attention_weights",
    "available_bytes",
    "chunked_attention",
    "column_sums",
    "format_bytes",
    "BACKENDS",
    "Backend",
    "backend_names",
    "get_backend",
    "register_backend",
    "restrict_backends",
    "select_backend",
]
