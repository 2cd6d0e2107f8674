"""Pure attention functions: scores, masks, normalizers, the oracle and ``attention()``."""

from . import masks, normalize, reference, scores
from .attention import attention, build_spec
from .masks import causal_mask, combine, gaussian_bias, lengths_mask, padding_mask, window_mask
from .normalize import NORMALIZERS, Normalizer, get_normalizer, register_normalizer
from .scores import SCORES, Score, get_score, register_score
from .spec import AttentionResult, AttentionSpec

__all__ = [
    "attention",
    "build_spec",
    "masks",
    "normalize",
    "reference",
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
