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
from .self_attention import SelfAttention
from .local import LocalAttention
from .content import ContentAttention, circular_shift, ntm_address, sharpen
from .hard import HardAttention, LearnedBaseline, MovingAverageBaseline, reinforce_loss
from .vision import CBAM, ChannelAttention, SpatialAttention, SqueezeExcite
from .sigma_pi import SigmaPi

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
    "SelfAttention",
    "LocalAttention",
    "ContentAttention",
    "circular_shift",
    "ntm_address",
    "sharpen",
    "HardAttention",
    "LearnedBaseline",
    "MovingAverageBaseline",
    "reinforce_loss",
    "CBAM",
    "ChannelAttention",
    "SpatialAttention",
    "SqueezeExcite",
    "SigmaPi",
]
