"""The leaves of attnkit: what one attention call is made of, with no kernels and no modules.

* :mod:`~attnkit.core.spec`: :class:`AttentionSpec` (one validated call), :class:`AttentionResult`,
  FlexAttention's ``ScoreMod`` / ``MaskMod`` conventions.
* :mod:`~attnkit.core.scores`: alignment scores split into ``project`` (per token) and ``pairwise`` (per pair).
* :mod:`~attnkit.core.masks`: boolean masks (True = attention allowed) and float biases.
* :mod:`~attnkit.core.normalize`: softmax, sparsemax, entmax-1.5, argmax, sample, Gumbel.
* :mod:`~attnkit.core.reference`: the float64 oracle every backend is tested against.
* :mod:`~attnkit.core.registry`: the one :class:`Registry` class behind every name lookup.

Nothing here imports any other part of attnkit.
"""

from . import masks, normalize, reference, registry, scores, spec
from .normalize import NORMALIZERS, Normalizer, get_normalizer, register_normalizer
from .registry import Registry
from .scores import SCORES, Score, get_score, register_score
from .spec import AttentionResult, AttentionSpec, MaskMod, ScoreMod

__all__ = [
    "masks",
    "normalize",
    "reference",
    "registry",
    "scores",
    "spec",
    "NORMALIZERS",
    "Normalizer",
    "get_normalizer",
    "register_normalizer",
    "Registry",
    "SCORES",
    "Score",
    "get_score",
    "register_score",
    "AttentionResult",
    "AttentionSpec",
    "MaskMod",
    "ScoreMod",
]
