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

__all__ = [
    "BACKENDS",
    "Backend",
    "backend_names",
    "get_backend",
    "register_backend",
    "restrict_backends",
    "select_backend",
]
