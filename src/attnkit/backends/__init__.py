"""Kernels behind ``attnkit.functional.attention``: :mod:`.base` (capabilities, refusals,
memory estimates), :mod:`.dispatch` (which backend runs a call), and the backends
``sdpa``, ``triton_additive``, ``triton_dot``, ``chunked``, ``math``, ``reference``."""

from . import chunked as _chunked  # noqa: F401  (registers "chunked")
from . import math as _math  # noqa: F401  (registers "math" and "reference")
from . import sdpa as _sdpa  # noqa: F401  (registers "sdpa")
from . import triton as _triton  # noqa: F401  (registers "triton_additive", "triton_dot")
from .base import BACKENDS, Backend, available_bytes, format_bytes, get_backend, register_backend
from .chunked import chunked_attention
from .dispatch import allowed_backends, auto_declines, backend_names, restrict_backends, select_backend

__all__ = [
    "allowed_backends",
    "auto_declines",
    "available_bytes",
    "chunked_attention",
    "format_bytes",
    "BACKENDS",
    "Backend",
    "backend_names",
    "get_backend",
    "register_backend",
    "restrict_backends",
    "select_backend",
]
