"""nn.Module wrappers that own parameters and call :mod:`attnkit.functional`.

Every attention module returns an :class:`AttentionOutput`; the sequence
mechanisms are registered by name (``attnkit.create("bahdanau", 256)``,
``attnkit.list_mechanisms()``, see :mod:`attnkit.nn.registry`).
"""

from .base import AttentionOutput
from .registry import MECHANISMS, create, list_mechanisms, mechanism_info, register_mechanism
from .positional import (
    ALiBi,
    LearnedPositionalEncoding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)
from .additive import AdditiveAttention
from .luong import LuongAttention
from .multihead import KVCache, MultiHeadAttention
from .torch_compat import MultiheadAttention

__all__ = [
    "AttentionOutput",
    "MECHANISMS",
    "create",
    "list_mechanisms",
    "mechanism_info",
    "register_mechanism",
    "ALiBi",
    "LearnedPositionalEncoding",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "AdditiveAttention",
    "LuongAttention",
    "KVCache",
    "MultiHeadAttention",
    "MultiheadAttention",
]
