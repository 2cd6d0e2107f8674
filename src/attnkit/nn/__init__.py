"""nn.Module wrappers that own parameters and call :func:`attnkit.functional.attention`.

Every attention module returns an :class:`AttentionOutput`; the sequence
mechanisms are registered by name (``attnkit.create("bahdanau", 256)``,
``attnkit.list_mechanisms()``, see :mod:`attnkit.nn.registry`); importing this
package registers them all.

Two multi-head layers, on purpose:

* :class:`MultiHeadAttention`: attnkit's layer, batch-first, with GQA, any
  score, RoPE/ALiBi (``positional=``) and a :class:`KVCache`. Its mask is
  ``key_allowed`` (B, S): True = the key may be attended.
* :class:`TorchMultiheadAttention`: a drop-in for ``torch.nn.MultiheadAttention``
  (its arguments, state_dict and mask conventions: ``key_padding_mask`` True =
  padding). ``MultiheadAttention`` is an alias of it (the same class under
  torch's spelling), for drop-in imports.
"""

from .additive import AdditiveAttention
from .base import AttentionOutput
from .content import ContentAttention, circular_shift, ntm_address, sharpen
from .hard import HardAttention, LearnedBaseline, MovingAverageBaseline, reinforce_loss
from .kv_cache import KVCache
from .local import LocalAttention
from .luong import LuongAttention
from .multihead import MultiHeadAttention, MultiHeadMechanism
from .positional import (
    ALiBi,
    LearnedPositionalEncoding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)
from .registry import MECHANISMS, create, list_mechanisms, mechanism_info, register_mechanism
from .self_attention import SelfAttention
from .sigma_pi import SigmaPi
from .torch_compat import MultiheadAttention, TorchMultiheadAttention
from .vision import CBAM, ChannelAttention, SpatialAttention, SqueezeExcite

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
    "MultiHeadMechanism",
    "TorchMultiheadAttention",
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
