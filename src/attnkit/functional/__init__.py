"""The top of the pure stack: ``attention()``, ``attention_weights()``, ``column_sums()``.

The pieces a call is made of live in :mod:`attnkit.core`; its ``masks``, ``scores`` and
``normalize`` modules are reachable from here too, because they are what a caller of
``attention()`` passes (``from attnkit.functional import attention, masks``).
"""

from ..core import masks, normalize, scores
from .attention import attention, build_spec
from .weights import attention_weights, column_sums

__all__ = ["attention", "attention_weights", "build_spec", "column_sums", "masks", "normalize", "scores"]
