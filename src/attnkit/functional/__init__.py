"""The top of the pure stack: ``attention()``, ``attention_weights()``, ``column_sums()``.

The pieces a call is made of live in :mod:`attnkit.core`; ``masks``, ``scores`` and
``normalize`` are re-exported here because they are what a caller of ``attention()`` passes.
"""

from ..core import masks, normalize, scores
from ..core.masks import causal_mask, combine, gaussian_bias, lengths_mask, padding_mask, window_mask
from ..core.normalize import NORMALIZERS, Normalizer, get_normalizer, register_normalizer
from ..core.scores import SCORES, Score, get_score, register_score
from ..core.spec import AttentionResult, AttentionSpec
from .attention import attention, build_spec
from .weights import attention_weights, column_sums

__all__ = [
    "attention",
    "attention_weights",
    "build_spec",
    "column_sums",
    "masks",
    "normalize",
    "scores",
    "causal_mask",
    "combine",
    "gaussian_bias",
    "lengths_mask",
    "padding_mask",
    "window_mask",
    "NORMALIZERS",
    "Normalizer",
    "get_normalizer",
    "register_normalizer",
    "SCORES",
    "Score",
    "get_score",
    "register_score",
    "AttentionResult",
    "AttentionSpec",
]
